"""A resource server for Latchkey's access tokens (RFC 9068), with FastAPI and PyJWT.

GET /reports needs a bearer token that is RS256-signed by a key in Latchkey's JWKS (found
through the issuer's discovery document; PyJWKClient caches it and fetches it again on an
unknown kid, at most once a second), has typ at+jwt, iss == ISSUER, aud == AUDIENCE and a
live exp (else 401), and whose flat `roles` claim holds "reports-reader" (else 403).
"""

import json
import os
import urllib.request

import jwt
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

ISSUER = os.environ["ISSUER"]
AUDIENCE = os.environ.get("AUDIENCE", "latchkey")
with urllib.request.urlopen(f"{ISSUER}/.well-known/openid-configuration", timeout=10) as r:
    discovery = json.load(r)
if discovery["issuer"] != ISSUER:
    raise SystemExit(f"discovery names issuer {discovery['issuer']}")
jwks = jwt.PyJWKClient(discovery["jwks_uri"], cooldown_duration=1)

app = FastAPI()
bearer = HTTPBearer(auto_error=False)


def claims(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> dict:
    def unauthorized(detail: str) -> HTTPException:
        return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})

    if creds is None:
        raise unauthorized("missing token")
    try:
        key = jwks.get_signing_key_from_jwt(creds.credentials)
        token = jwt.decode_complete(
            creds.credentials, key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as err:
        raise unauthorized(f"invalid token: {err}") from err
    if str(token["header"].get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        raise unauthorized("invalid token: typ is not at+jwt")
    return token["payload"]


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/reports")
def reports(c: dict = Depends(claims)) -> dict:
    roles = c.get("roles")
    if not isinstance(roles, list) or "reports-reader" not in roles:
        raise HTTPException(403, "needs the role reports-reader")
    return {"reports": [{"id": 1, "title": "Quarterly logins"}], "sub": c["sub"]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="warning")

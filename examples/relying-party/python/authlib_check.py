"""Latchkey judged by Authlib, with no browser.

Starts its own Latchkey on http://localhost:PORT (SQLite in a temporary directory), then:

1. validates the discovery document with Authlib's RFC 8414 and OpenID Connect Discovery
   metadata models;
2. signs a user in the way a browser would, with `requests`: the authorization request
   (PKCE S256, state, nonce) built by Authlib's OAuth2Session, the hosted sign-in and
   consent forms posted with their hidden `interaction` and `csrf_token` fields and the
   cookies kept, every 303 followed by hand up to the redirect URI;
3. exchanges the code with Authlib (client_secret_basic), validates the id_token with
   `authlib.jose.jwt.decode` against the server's JWKS as a `CodeIDToken` (iss, aud,
   exp, iat, nonce, azp and at_hash), and shows each check is live by failing it on
   purpose (another nonce, another access token);
4. reads userinfo, and replays the code: refused, and the tokens it gave are revoked.

Prints one line per check and `authlib: N passed, M failed`; exits non-zero on any failure.
SERVER_BIN names the server binary (default: target/debug/latchkey from the repo root).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.deprecate import AuthlibDeprecationWarning

# authlib.jose is slated to give way to joserfc in Authlib 2; it is still Authlib's
# JOSE API in 1.x and the one this check is about, so its notice is not printed.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt
    from authlib.jose.errors import JoseError

from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.core import CodeIDToken
from authlib.oidc.core.util import create_half_hash
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc.errors import JoseError as JoserfcError

REPO = Path(__file__).resolve().parents[3]
SERVER_BIN = os.environ.get("SERVER_BIN") or str(REPO / "target" / "debug" / "latchkey")
USERNAME, PASSWORD, EMAIL = "paula", "paula's long password", "paula@example.com"
CLIENT_ID = "python-notes"

PASSED: list[str] = []
FAILED: list[str] = []


def check(name: str, ok: bool, detail: object = "") -> bool:
    if ok:
        PASSED.append(name)
        print(f"ok    {name}")
    else:
        FAILED.append(name)
        print(f"FAIL  {name}: {detail}")
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Forms(HTMLParser):
    """The forms of a hosted page: action → {name: value} of their hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.buttons: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and a.get("type") == "hidden" and self.forms:
            self.forms[-1][1][a.get("name", "")] = a.get("value", "")
        elif tag == "button" and a.get("name"):
            self.buttons.append((a["name"], a.get("value", "")))


def parse_forms(html: str) -> Forms:
    parser = Forms()
    parser.feed(html)
    return parser


class Browser:
    """A user agent: keeps cookies, sends Origin on form posts as browsers do, and
    follows redirects by hand so the one to the client's redirect URI is caught."""

    def __init__(self, issuer: str, redirect_uri: str) -> None:
        self.http = requests.Session()
        self.issuer = issuer
        self.redirect_uri = redirect_uri
        self.hops: list[str] = []

    def go(self, method: str, url: str, data: dict | None = None) -> requests.Response | str:
        """Follows 3xx up to a page (its response) or the redirect URI (that URL)."""
        headers = {"origin": self.issuer} if method == "POST" else {}
        r = self.http.request(method, url, data=data, headers=headers, allow_redirects=False, timeout=10)
        for _ in range(10):
            self.hops.append(f"{r.status_code} {method} {r.url}")
            if r.status_code not in (301, 302, 303, 307):
                return r
            target = urljoin(r.url, r.headers["location"])
            if target.startswith(self.redirect_uri):
                self.hops.append(f"-> {target}")
                return target
            method = "GET"
            r = self.http.get(target, allow_redirects=False, timeout=10)
        raise RuntimeError(f"too many redirects: {self.hops}")


def start_server(work: Path, port: int, issuer: str, redirect_uri: str) -> tuple[subprocess.Popen, str]:
    env = dict(
        os.environ,
        LATCHKEY_LISTEN=f"127.0.0.1:{port}",
        LATCHKEY_PUBLIC_URL=issuer,
        LATCHKEY_DATABASE_URL=f"sqlite://{work}/db.sqlite?mode=rwc",
        LATCHKEY_MASTER_KEY_FILE=str(work / "master.key"),
        LATCHKEY_COOKIE__SECURE="false",
        LATCHKEY_PASSWORDS__ARGON2_MEMORY_KIB="4096",
        LATCHKEY_PASSWORDS__ARGON2_ITERATIONS="1",
        RUST_LOG="warn",
    )

    def cli(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [SERVER_BIN, *args], env=env, input=stdin, capture_output=True, text=True, check=True
        ).stdout

    cli("user", "create", "--username", USERNAME, "--role", "user", "--email", EMAIL, stdin=PASSWORD + "\n")
    out = cli(
        "client",
        "create",
        "--client-id",
        CLIENT_ID,
        "--name",
        "Python Notes",
        "--confidential",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "email",
        "--redirect-uri",
        redirect_uri,
    )
    secret = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("client_secret:"))
    log = open(work / "server.log", "wb")  # noqa: SIM115 (the server's, for as long as it runs)
    server = subprocess.Popen([SERVER_BIN, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        if server.poll() is not None:
            raise RuntimeError(f"latchkey serve exited: {(work / 'server.log').read_text()}")
        try:
            if requests.get(f"{issuer}/readyz", timeout=1).ok:
                return server, secret
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"latchkey was not ready within 20 s: {(work / 'server.log').read_text()}")


def b64json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def run(issuer: str, secret: str, redirect_uri: str) -> None:
    # 1. Discovery, judged by both of Authlib's metadata models.
    doc = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    for model in (AuthorizationServerMetadata, OpenIDProviderMetadata):
        try:
            model(doc).validate()
            check(f"discovery validates as {model.__module__}.{model.__name__}", True)
        except ValueError as e:
            check(f"discovery validates as {model.__module__}.{model.__name__}", False, e)
    check("discovery: issuer is the public URL", doc.get("issuer") == issuer, doc.get("issuer"))
    rfc8414 = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10)
    if rfc8414.ok:
        check("RFC 8414 well-known document equals the OIDC one", rfc8414.json() == doc, rfc8414.text[:300])
    else:
        print(
            f"note  no /.well-known/oauth-authorization-server ({rfc8414.status_code}); optional for an OIDC provider"
        )

    # 2. Sign in through the hosted pages.
    rp = OAuth2Session(
        CLIENT_ID,
        secret,
        scope="openid profile email",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    auth_url, state = rp.create_authorization_url(doc["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    browser = Browser(issuer, redirect_uri)
    page = browser.go("GET", auth_url)
    if not check("authorize leads to the sign-in page", isinstance(page, requests.Response) and page.ok, browser.hops):
        return
    forms = parse_forms(page.text)
    signin = next((f for f in forms.forms if f[0] == "/ui/signin"), None)
    if not check(
        "the sign-in page has a form with interaction and csrf_token",
        signin is not None and {"interaction", "csrf_token"} <= signin[1].keys(),
        page.text[:500],
    ):
        return
    page = browser.go("POST", urljoin(page.url, signin[0]), {**signin[1], "username": USERNAME, "password": PASSWORD})
    if isinstance(page, requests.Response):
        forms = parse_forms(page.text)
        consent = next((f for f in forms.forms if f[0] == "/ui/consent"), None)
        if not check("a third-party client's consent page follows the sign-in", consent is not None, browser.hops):
            print(page.text[:1000])
            return
        page = browser.go("POST", urljoin(page.url, consent[0]), {**consent[1], "decision": "allow"})
    if not check("the browser is sent back to the redirect URI", isinstance(page, str), browser.hops):
        return
    callback = page
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    check("the authorization response carries iss (RFC 9207)", query.get("iss") == issuer, query)
    check("the authorization response carries the state", query.get("state") == state, query)

    # 3. The code exchange and the id_token.
    seen: list[requests.Response] = []
    rp.register_compliance_hook("access_token_response", lambda r: seen.append(r) or r)
    token = rp.fetch_token(doc["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier)
    check("token response: token_type Bearer", str(token.get("token_type", "")).lower() == "bearer", token)
    check("token response: an id_token", "id_token" in token, token.keys())
    cache = seen[0].headers.get("cache-control", "") if seen else ""
    check(
        "token response: Cache-Control no-store (RFC 6749 5.1)",
        "no-store" in cache,
        dict(seen[0].headers) if seen else "no response seen",
    )
    id_token = token["id_token"]
    header = b64json(id_token.split(".")[0])
    check(
        "id_token header: alg RS256, typ JWT, a kid",
        header.get("alg") == "RS256" and header.get("typ") == "JWT" and bool(header.get("kid")),
        header,
    )
    jwks = requests.get(doc["jwks_uri"], timeout=10).json()
    keys = JsonWebKey.import_key_set(jwks)
    options = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": CLIENT_ID},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "nonce": {"essential": True},
        "at_hash": {"essential": True},
    }

    def decode(nonce_param: str, access_token: str):
        return jwt.decode(
            id_token,
            keys,
            claims_cls=CodeIDToken,
            claims_options=json.loads(json.dumps(options)),
            claims_params={"nonce": nonce_param, "client_id": CLIENT_ID, "access_token": access_token},
        )

    try:
        claims = decode(nonce, token["access_token"])
        claims.validate(leeway=5)
        check("id_token: signature (JWKS), iss, aud, exp, iat, nonce, azp and at_hash validate", True)
    except (JoseError, JoserfcError, ValueError) as e:
        check("id_token: signature (JWKS), iss, aud, exp, iat, nonce, azp and at_hash validate", False, repr(e))
        return
    check(
        "id_token: at_hash is the library's half hash of the access token",
        claims["at_hash"] == create_half_hash(token["access_token"], "RS256").decode(),
        claims.get("at_hash"),
    )
    for what, claim, args in [
        ("another nonce", "nonce", ("not-the-nonce", token["access_token"])),
        ("another access token", "at_hash", (nonce, token["access_token"] + "x")),
    ]:
        try:
            decode(*args).validate(leeway=5)
            check(f"id_token validation fails on {claim} with {what}", False, "it validated")
        except (JoseError, JoserfcError, ValueError) as e:
            check(f"id_token validation fails on {claim} with {what}", claim in str(e), repr(e))
    check(
        "id_token: auth_time, sid and amr",
        isinstance(claims.get("auth_time"), int)
        and isinstance(claims.get("sid"), str)
        and claims.get("amr") == ["pwd"],
        dict(claims),
    )

    # 4. userinfo, then the code replayed.
    info = rp.get(doc["userinfo_endpoint"], timeout=10)
    body = info.json() if info.ok else {}
    check(
        "userinfo: the id_token's subject, username and email",
        body.get("sub") == claims["sub"] and body.get("preferred_username") == USERNAME and body.get("email") == EMAIL,
        (info.status_code, info.text[:300]),
    )
    r = rp.post(doc["userinfo_endpoint"], timeout=10)
    check(
        "userinfo answers POST (OIDC Core 5.3.1)",
        r.ok and r.json().get("sub") == claims["sub"],
        (r.status_code, r.text[:200]),
    )
    replay = OAuth2Session(
        CLIENT_ID, secret, redirect_uri=redirect_uri, token_endpoint_auth_method="client_secret_basic"
    )
    try:
        replay.fetch_token(doc["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier)
        check("a replayed code is refused", False, "a second token response")
    except Exception as e:  # noqa: BLE001 (Authlib's OAuthError carries the server's error code)
        check("a replayed code is refused with invalid_grant", getattr(e, "error", None) == "invalid_grant", repr(e))
    after = requests.get(
        doc["userinfo_endpoint"], headers={"authorization": f"Bearer {token['access_token']}"}, timeout=10
    )
    check(
        "the replay revoked the access token the code gave", after.status_code == 401, (after.status_code, after.text)
    )
    if "refresh_token" in token:
        refresh = requests.post(
            doc["token_endpoint"],
            auth=(CLIENT_ID, secret),
            timeout=10,
            data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        )
        check(
            "the replay revoked the refresh token the code gave",
            refresh.status_code == 400 and refresh.json().get("error") == "invalid_grant",
            (refresh.status_code, refresh.text),
        )


def main() -> int:
    if not os.access(SERVER_BIN, os.X_OK):
        print(f"FAIL  no server binary at {SERVER_BIN} (set SERVER_BIN)")
        return 1
    port, rp_port = free_port(), free_port()
    issuer = f"http://localhost:{port}"
    redirect_uri = f"http://127.0.0.1:{rp_port}/callback"
    with tempfile.TemporaryDirectory(prefix="latchkey-authlib-") as tmp:
        work = Path(tmp)
        server, secret = start_server(work, port, issuer, redirect_uri)
        try:
            run(issuer, secret, redirect_uri)
        except Exception:  # noqa: BLE001 (any crash is one failure, printed)
            check("the run finished", False, traceback.format_exc())
        finally:
            server.terminate()
            server.wait(timeout=10)
        if FAILED:
            print("server log:\n" + (work / "server.log").read_text()[-4000:])
    print(f"authlib: {len(PASSED)} passed, {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

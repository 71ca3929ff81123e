"""Test tokens for .ci/resource-servers.sh, signed (or forged) outside Latchkey.

  forge_tokens.py genkey PEM          writes a new 2048-bit RSA key (PKCS#1) for
                                      `latchkey keys import`, prints its kid (the RFC 7638
                                      thumbprint, which is how Latchkey names keys)
  forge_tokens.py kid TOKEN           prints the kid in a token's header
  forge_tokens.py tokens PEM ISSUER AUDIENCE SUBJECT
                                      prints `NAME TOKEN` lines, all with roles
                                      [reports-reader] and the PEM key's kid:
    valid          signed with PEM, nothing wrong (a control: it must be accepted)
    expired        exp an hour ago
    wrong_aud      aud is another API
    wrong_iss      iss is ISSUER with a path added
    typ_jwt        typ JWT rather than RFC 9068's at+jwt
    alg_none       alg none, no signature
    hs256_pubkey   HS256 with the public key's PEM as the HMAC secret
    foreign_key    signed by a throwaway RSA key under PEM's kid

DPoP (RFC 9449), with an ES256 key of the client's:
  forge_tokens.py dpopkey PEM         writes a new P-256 key (PKCS#8), prints its RFC 7638
                                      thumbprint (what a bound token's cnf.jkt must be)
  forge_tokens.py dpoptoken PEM TOKEN_URL CLIENT_ID CLIENT_SECRET
                                      a client_credentials grant (client_secret_basic) with a
                                      proof by PEM, retried once with the server's nonce when
                                      it answers 400 use_dpop_nonce; prints the access token
                                      after checking token_type DPoP and cnf.jkt
  forge_tokens.py proof PEM METHOD URL [ACCESS_TOKEN]
                                      prints a fresh proof for METHOD URL (with ath, the
                                      hash of ACCESS_TOKEN, when given)
"""

import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import quote_plus

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    numbers = public_key.public_numbers()
    as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")  # noqa: E731
    jwk = {"e": b64(as_bytes(numbers.e)), "kty": "RSA", "n": b64(as_bytes(numbers.n))}
    return b64(hashlib.sha256(json.dumps(jwk, separators=(",", ":")).encode()).digest())


def load(path: str):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def genkey(path: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with open(path, "wb") as f:
        f.write(pem)
    print(thumbprint(key.public_key()))


def tokens(path: str, issuer: str, audience: str, subject: str) -> None:
    key = load(path)
    kid = thumbprint(key.public_key())
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "nbf": now,
              "exp": now + 600, "roles": ["reports-reader"], "jti": f"forged-{now}"}
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}

    def rs256(payload: dict, signer=key, **extra) -> str:
        return jwt.encode(payload, signer, algorithm="RS256", headers={**header, **extra})

    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # PyJWT refuses a PEM as an HMAC secret (the very attack), so HS256 is put together by hand.
    hs_input = f"{b64json({**header, 'alg': 'HS256'})}.{b64json(claims)}"
    hs_sig = b64(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    out = {
        "valid": rs256(claims),
        "expired": rs256({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "wrong_aud": rs256({**claims, "aud": "another-api"}),
        "wrong_iss": rs256({**claims, "iss": issuer.rstrip("/") + "/not-latchkey"}),
        "typ_jwt": rs256(claims, typ="JWT"),
        "alg_none": f"{b64json({**header, 'alg': 'none'})}.{b64json(claims)}.",
        "hs256_pubkey": f"{hs_input}.{hs_sig}",
        "foreign_key": rs256(claims, signer=foreign),
    }
    for name, token in out.items():
        print(name, token)


def ec_jwk(public_key: ec.EllipticCurvePublicKey) -> dict:
    """The public JWK of a P-256 key, its members in RFC 7638 order."""
    numbers = public_key.public_numbers()
    return {"crv": "P-256", "kty": "EC",
            "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}


def jkt(jwk: dict) -> str:
    return b64(hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()).digest())


def dpopkey(path: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with open(path, "wb") as f:
        f.write(pem)
    print(jkt(ec_jwk(key.public_key())))


def make_proof(key, method: str, url: str, access_token=None, nonce=None) -> str:
    claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
    if access_token is not None:
        claims["ath"] = b64(hashlib.sha256(access_token.encode()).digest())
    if nonce is not None:
        claims["nonce"] = nonce
    headers = {"typ": "dpop+jwt", "jwk": ec_jwk(key.public_key())}
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


def dpoptoken(path: str, token_url: str, client_id: str, client_secret: str) -> None:
    key = load(path)
    basic = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()).decode()  # RFC 6749 §2.3.1, RFC 7617
    nonce = None
    for attempt in (1, 2):
        request = urllib.request.Request(
            token_url, data=b"grant_type=client_credentials", method="POST",
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json",
                     "Content-Type": "application/x-www-form-urlencoded",
                     "DPoP": make_proof(key, "POST", token_url, nonce=nonce)})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                body = json.load(response)
            break
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                error = json.loads(text).get("error")
            except ValueError:
                error = None
            nonce = err.headers.get("DPoP-Nonce")
            if attempt == 1 and err.code == 400 and error == "use_dpop_nonce" and nonce:
                continue
            sys.exit(f"token endpoint: {err.code} {text[:300]} (DPoP-Nonce: {nonce})")
    if str(body.get("token_type", "")).lower() != "dpop":
        sys.exit(f"token_type is {body.get('token_type')!r}, not DPoP")
    token = body["access_token"]
    bound = jwt.decode(token, options={"verify_signature": False}).get("cnf", {}).get("jkt")
    if bound != jkt(ec_jwk(key.public_key())):
        sys.exit(f"the access token's cnf.jkt is {bound!r}, not the proof key's thumbprint")
    print(token)


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "genkey":
        genkey(argv[1])
    elif len(argv) == 2 and argv[0] == "kid":
        print(jwt.get_unverified_header(argv[1]).get("kid", ""))
    elif len(argv) == 5 and argv[0] == "tokens":
        tokens(*argv[1:])
    elif len(argv) == 2 and argv[0] == "dpopkey":
        dpopkey(argv[1])
    elif len(argv) == 5 and argv[0] == "dpoptoken":
        dpoptoken(*argv[1:])
    elif len(argv) in (4, 5) and argv[0] == "proof":
        print(make_proof(load(argv[1]), argv[2], argv[3], *argv[4:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

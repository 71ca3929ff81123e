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
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    numbers = public_key.public_numbers()
    as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")  # noqa: E731
    jwk = {"e": b64(as_bytes(numbers.e)), "kty": "RSA", "n": b64(as_bytes(numbers.n))}
    return b64(hashlib.sha256(json.dumps(jwk, separators=(",", ":")).encode()).digest())


def load(path: str) -> rsa.RSAPrivateKey:
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


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "genkey":
        genkey(argv[1])
    elif len(argv) == 2 and argv[0] == "kid":
        print(jwt.get_unverified_header(argv[1]).get("kid", ""))
    elif len(argv) == 5 and argv[0] == "tokens":
        tokens(*argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

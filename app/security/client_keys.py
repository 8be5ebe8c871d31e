"""What a SMART Backend Services client does on its side, so that an integrator can try the flow with
nothing but `safeflag` and curl: make a key pair (`safeflag client keygen`: EC P-384 for ES384 or RSA
3072 for RS384, the two algorithms servers must accept) with its public JWKS, and sign a client
assertion with it (`safeflag client assertion`): `iss` = `sub` = the client id, `aud` = the token
endpoint, `exp` five minutes after `iat`, a fresh random `jti`, header `kid` = the key's RFC 7638
thumbprint (the `kid` keygen puts in the JWKS).
(https://hl7.org/fhir/smart-app-launch/backend-services.html#step-2-authenticate)
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.security.backend import MAX_ASSERTION_LIFETIME
from app.security.keys import PrivateKey, public_jwk, thumbprint

KEY_ALGS = ("ES384", "RS384")


def generate(alg: str) -> PrivateKey:
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "RS384":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"the algorithm must be one of {', '.join(KEY_ALGS)}, not '{alg}'")


def alg_of(key: PrivateKey) -> str:
    """ES384 for an EC P-384 key, RS384 for an RSA key of 2048 bits or more; ValueError otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return "ES384"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return "RS384"
    raise ValueError("the key must be an EC P-384 key (ES384) or an RSA key of 2048 bits or more (RS384)")


def client_jwks(key: PrivateKey) -> dict[str, Any]:
    """The public JWKS to register: the public key, its thumbprint as kid, its algorithm."""
    jwk = public_jwk(key.public_key())
    return {"keys": [{**jwk, "kid": thumbprint(jwk), "alg": alg_of(key), "use": "sig"}]}


def write_private_key(key: PrivateKey, path: Path) -> None:
    """PKCS#8 PEM, mode 0600, never over an existing file (FileExistsError)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_private_key(path: Path) -> PrivateKey:
    """A PEM private key usable for ES384/RS384; ValueError (with the reason) otherwise, OSError if unreadable."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        # a file with another kind of key is a bad value, as for any unusable file: callers catch ValueError
        raise ValueError(f"{path} must hold an EC P-384 or RSA private key")  # noqa: TRY004
    alg_of(key)
    return key


def sign_assertion(key: PrivateKey, client_id: str, token_url: str, *, kid: str | None = None,
                   now: float | None = None) -> str:
    """A client assertion JWT for the client_credentials grant, valid for five minutes from `now`."""
    # the wall clock by default: the token endpoint that checks it is another party's (or ours, which
    # checks client assertions on the wall clock as bearer tokens are: app/clock.py dates records only)
    issued = int(time.time() if now is None else now)
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": issued,
              "exp": issued + MAX_ASSERTION_LIFETIME, "jti": secrets.token_urlsafe(24)}
    header = {"kid": kid or thumbprint(public_jwk(key.public_key())), "typ": "JWT"}
    return jwt.encode(claims, key, algorithm=alg_of(key), headers=header)

"""Signing keys: the local issuer's private key in the data dir, JWK thumbprints, JWKS documents.

The local issuer key (EC P-256, ES256) is created on first start as `<data dir>/issuer-key.pem`
with mode 0600 in a 0700 directory. We refuse to start when the file is readable or writable by
group or others, is a symlink, is not a supported key, or is a published example key (the RFC 7515,
RFC 7517 and RFC 7638 examples are copied into many "getting started" guides). The key id (`kid`)
is the RFC 7638 JWK thumbprint (https://www.rfc-editor.org/rfc/rfc7638).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

KEY_FILE = "issuer-key.pem"
_CURVE_ALG = {"secp256r1": ("P-256", "ES256"), "secp384r1": ("P-384", "ES384")}

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class InsecureKeyError(RuntimeError):
    """The issuer key cannot be used safely; the message says how to fix it."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """The public JWK (kty, crv/x/y or n/e) of a key, without kid/alg/use."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    return {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the required members only."""
    members = ("crv", "kty", "x", "y") if jwk.get("kty") == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


# Public halves of published example keys (whose private halves are printed in the RFCs).
_PUBLISHED_EXAMPLES: tuple[dict[str, str], ...] = (
    # RFC 7515 appendix A.3 (ES256)
    {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
     "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    # RFC 7517 appendix A.2 (EC P-256)
    {"kty": "EC", "crv": "P-256", "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
     "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
    # RFC 7517 appendix A.2 / RFC 7638 section 3.1 (RSA, kid "2011-04-29")
    {"kty": "RSA", "e": "AQAB",
     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
          "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
          "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0"
          "fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"},
)
KNOWN_DEFAULT_THUMBPRINTS = frozenset(thumbprint(j) for j in _PUBLISHED_EXAMPLES)


@dataclass(frozen=True)
class SigningKey:
    """A private key with its JOSE algorithm and RFC 7638 key id."""

    private_key: PrivateKey
    alg: str
    kid: str

    @classmethod
    def from_private(cls, key: PrivateKey) -> SigningKey:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if key.curve.name not in _CURVE_ALG:
                raise InsecureKeyError(f"EC curve {key.curve.name} is not supported (use P-256 or P-384)")
            alg = _CURVE_ALG[key.curve.name][1]
        elif isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise InsecureKeyError(f"an RSA key of {key.key_size} bits is too short (2048 at least)")
            alg = "RS256"
        else:
            raise InsecureKeyError("the issuer key must be an EC (P-256/P-384) or RSA private key")
        return cls(key, alg, thumbprint(public_jwk(key.public_key())))

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, Any]:
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": self.alg, "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}


def _check_file(path: Path) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise InsecureKeyError(f"{path} must be a regular file, not a link or device")
    if info.st_mode & 0o077:
        raise InsecureKeyError(
            f"{path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )


def _create(path: Path) -> bool:
    """Write a new P-256 key with mode 0600; False when another process created it first.

    Written to a private temporary file, then hard-linked into place: the link either appears whole
    or fails because the file exists, so a worker starting alongside never reads half a key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def load_or_create_issuer_key(data_dir: Path) -> SigningKey:
    """The local issuer key, created on first start; raises InsecureKeyError rather than run unsafely."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / KEY_FILE
    if not path.exists() and not path.is_symlink():
        _create(path)
    _check_file(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InsecureKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise InsecureKeyError(f"{path} must hold an EC (P-256/P-384) or RSA private key")
    signing = SigningKey.from_private(key)
    if signing.kid in KNOWN_DEFAULT_THUMBPRINTS:
        raise InsecureKeyError(
            f"{path} holds a published example key; delete it and restart to generate a new one"
        )
    return signing

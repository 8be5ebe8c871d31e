"""Event positions as a browser sees them: sealed, so that they say nothing about anyone else's records.

The live stream and the notice lists keep their place in the transactional outbox by its row id, which
counts every committed change of every organisation. Handed to a browser as it is, two ids seen a minute
apart would tell a health visitor how many Tasks and Communications the whole server wrote in that
minute, the sexual-health service's included. So a position leaves the server only sealed: AES-GCM
(https://doi.org/10.6028/NIST.SP.800-38D) with a fresh random nonce every time, under a key derived with
HKDF-SHA256 (RFC 5869) from the server's issuer key in the data directory. A token is 48 URL-safe
characters that differ at every use, even for the same position, and cannot be forged or altered.

Every process of one server (and every server sharing its data directory's key) opens the others'
tokens, so a reconnection after a restart picks up where it was. A token the server cannot open (another
key, or tampered with) reads as no position: the page then fetches its whole list again, which is
always correct.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.security.keys import PrivateKey

_PURPOSE = b"safeflag web event position v1"
TOKEN_LENGTH = 48  # base64url of nonce (12) + position (8) + tag (16)


@dataclass(frozen=True)
class Positions:
    """Seals and opens outbox positions (`seal(n)` -> token, `open(token)` -> n or None)."""

    key: bytes

    @classmethod
    def from_issuer_key(cls, private_key: PrivateKey) -> Positions:
        secret = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        return cls(HKDF(hashes.SHA256(), 32, salt=None, info=_PURPOSE).derive(secret))

    @classmethod
    def random(cls) -> Positions:
        return cls(AESGCM.generate_key(bit_length=256))

    def seal(self, position: int) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self.key).encrypt(nonce, position.to_bytes(8, "big"), _PURPOSE)
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str | None) -> int | None:
        if not token or len(token) != TOKEN_LENGTH or not token.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(token)
            plain = AESGCM(self.key).decrypt(raw[:12], raw[12:], _PURPOSE)
        except (InvalidTag, ValueError, binascii.Error):
            return None
        return int.from_bytes(plain, "big")

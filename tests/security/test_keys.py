"""The local issuer key: created safely on first start, refused when unsafe (contract section 1/3)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.config import Settings
from app.security.keys import (
    KEY_FILE,
    KNOWN_DEFAULT_THUMBPRINTS,
    InsecureKeyError,
    load_or_create_issuer_key,
    thumbprint,
)
from app.security.runtime import SecurityRuntime
from app.security.tokens import SecurityConfigError


def write_key(path: Path, key: object, mode: int = 0o600) -> None:
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(mode)


def test_created_on_first_start_with_0600(tmp_path: Path) -> None:
    data = tmp_path / "var"
    key = load_or_create_issuer_key(data)
    path = data / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) & 0o077 == 0
    assert key.alg == "ES256" and len(key.kid) == 43
    again = load_or_create_issuer_key(data)
    assert again.kid == key.kid  # the same key on the next start


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_group_or_world_access_refused(tmp_path: Path, mode: int) -> None:
    write_key(tmp_path / KEY_FILE, ec.generate_private_key(ec.SECP256R1()), mode)
    with pytest.raises(InsecureKeyError) as err:
        load_or_create_issuer_key(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / KEY_FILE} is accessible by group or others (mode {mode:04o}); run: chmod 600 {tmp_path / KEY_FILE}"
    )


def test_symlink_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.pem"
    write_key(real, ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / KEY_FILE).symlink_to(real)
    with pytest.raises(InsecureKeyError, match="must be a regular file"):
        load_or_create_issuer_key(tmp_path)


def _b64int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def test_published_example_key_refused(tmp_path: Path) -> None:
    # RFC 7515 appendix A.3: its private key is printed in the RFC
    rfc_key = ec.derive_private_key(_b64int("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"), ec.SECP256R1())
    write_key(tmp_path / KEY_FILE, rfc_key)
    with pytest.raises(InsecureKeyError) as err:
        load_or_create_issuer_key(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / KEY_FILE} holds a published example key; delete it and restart to generate a new one"
    )


def test_rfc7638_thumbprint_known_answer() -> None:
    assert "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" in KNOWN_DEFAULT_THUMBPRINTS
    assert thumbprint({"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "kid": "ignored"}) == thumbprint(
        {"y": "b", "x": "a", "crv": "P-256", "kty": "EC"})


def test_short_rsa_and_garbage_refused(tmp_path: Path) -> None:
    write_key(tmp_path / KEY_FILE, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(InsecureKeyError, match="an RSA key of 1024 bits is too short"):
        load_or_create_issuer_key(tmp_path)
    (tmp_path / KEY_FILE).write_bytes(b"not a key")
    with pytest.raises(InsecureKeyError, match="is not an unencrypted PEM private key"):
        load_or_create_issuer_key(tmp_path)


def test_rsa_and_p384_keys_are_accepted(tmp_path: Path) -> None:
    write_key(tmp_path / KEY_FILE, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert load_or_create_issuer_key(tmp_path).alg == "RS256"
    os.remove(tmp_path / KEY_FILE)
    write_key(tmp_path / KEY_FILE, ec.generate_private_key(ec.SECP384R1()))
    assert load_or_create_issuer_key(tmp_path).alg == "ES384"


def test_runtime_refuses_to_start(tmp_path: Path) -> None:
    write_key(tmp_path / KEY_FILE, ec.generate_private_key(ec.SECP256R1()), 0o644)
    with pytest.raises(InsecureKeyError):
        SecurityRuntime.from_settings(Settings(data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    (tmp_path / KEY_FILE).chmod(0o600)
    with pytest.raises(SecurityConfigError):
        SecurityRuntime.from_settings(Settings(data_dir=tmp_path, auth_issuers="nope", _env_file=None))  # type: ignore[call-arg]


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        kids = set(pool.map(lambda _: load_or_create_issuer_key(tmp_path / "var").kid, range(16)))
    assert len(kids) == 1
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == [KEY_FILE]  # no temporary files left

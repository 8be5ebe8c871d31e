"""`safeflag client keygen` and `safeflag client assertion` through the typer app: the key files (mode
0600, never overwritten), a JWKS that `client add` accepts with the key's thumbprint as kid, and an
assertion that verifies with that JWKS with exactly the claims the token endpoint requires. The whole
flow against a real server on both databases is tests/e2e/test_cli_ops.py."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from app.cli import app
from app.security.client_keys import write_private_key
from app.security.clients import validate_jwks

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFEFLAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SAFEFLAG_BASE_URL", "http://127.0.0.1:8093")
    monkeypatch.delenv("SAFEFLAG_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("alg", "kty"), [("ES384", "EC"), ("RS384", "RSA")])
def test_keygen_then_assertion(env: Path, alg: str, kty: str) -> None:
    done = runner.invoke(app, ["client", "keygen", "--id", "ed-epr", "--alg", alg])
    assert done.exit_code == 0, done.stderr
    key_file, jwks_file = env / "ed-epr.key.pem", env / "ed-epr.jwks.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    jwks = json.loads(jwks_file.read_text())
    assert validate_jwks(jwks) == jwks
    (jwk,) = jwks["keys"]
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == (kty, alg, "sig")
    lines = done.stdout.splitlines()
    assert [line.split(" : ")[0].strip() for line in lines] == ["private key", "public JWKS", "register", "sign"]
    assert lines[2].endswith(" client add --id ed-epr --jwks-file ed-epr.jwks.json "
                             "--scope 'system/Encounter.cru system/Patient.rs'")
    assert lines[3].endswith(" client assertion --key ed-epr.key.pem --client-id ed-epr "
                             "--token-url http://127.0.0.1:8093/auth/token)")

    signed = runner.invoke(app, ["client", "assertion", "--key", str(key_file), "--client-id", "ed-epr"])
    assert signed.exit_code == 0, signed.stderr
    token = signed.stdout.strip()
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": jwk["kid"], "typ": "JWT"}
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[alg], audience="http://127.0.0.1:8093/auth/token")
    assert sorted(claims) == ["aud", "exp", "iat", "iss", "jti", "sub"]
    assert (claims["iss"], claims["sub"], claims["exp"] - claims["iat"]) == ("ed-epr", "ed-epr", 300)
    other = runner.invoke(app, ["client", "assertion", "--key", str(key_file), "--client-id", "ed-epr",
                                "--token-url", "https://safeflag.example/auth/token"])
    other_claims = jwt.decode(other.stdout.strip(), options={"verify_signature": False})
    assert other_claims["aud"] == "https://safeflag.example/auth/token" and other_claims["jti"] != claims["jti"]


def test_keygen_never_overwrites(env: Path) -> None:
    (env / "ed-epr.jwks.json").write_text("{}")
    done = runner.invoke(app, ["client", "keygen", "--id", "ed-epr"])
    assert (done.exit_code, done.stdout) == (2, "")
    assert done.stderr == "error: ed-epr.jwks.json already exists; remove it or choose another --out-dir\n"
    assert not (env / "ed-epr.key.pem").exists() and (env / "ed-epr.jwks.json").read_text() == "{}"


@pytest.mark.parametrize(("args", "message"), [
    (["keygen", "--id", "../x"], "--id must be 1 to 64 letters, digits, '.', '_' or '-' (it names the files)"),
    (["keygen", "--id", "a", "--alg", "HS256"], "--alg must be one of ES384, RS384, not 'HS256'"),
    (["keygen", "--id", "a", "--scope", "user/Flag.rs"],
     "'user/Flag.rs' is not a SMART v2 system/ resource scope (e.g. system/Encounter.c)"),
    (["keygen", "--id", "a", "--out-dir", "missing"], "--out-dir: missing is not a directory"),
    (["assertion", "--key", "missing.pem", "--client-id", "a"], "cannot read missing.pem: No such file or directory"),
    (["assertion", "--key", "p256.pem", "--client-id", "a"],
     "the key must be an EC P-384 key (ES384) or an RSA key of 2048 bits or more (RS384)"),
    (["assertion", "--key", "p256.pem", "--client-id", "a", "--token-url", "ftp://x/token"],
     "--token-url must be an http(s) URL such as http://127.0.0.1:8080, not 'ftp://x/token'"),
    (["remove", "--id", "nobody"], "no client 'nobody' is registered"),
])
def test_client_commands_refuse(env: Path, args: list[str], message: str) -> None:
    write_private_key(ec.generate_private_key(ec.SECP256R1()), env / "p256.pem")
    if args[0] == "remove":
        assert runner.invoke(app, ["migrate"]).exit_code == 0
    done = runner.invoke(app, ["client", *args])
    assert (done.exit_code, done.stdout, done.stderr) == (2, "", f"error: {message}\n")

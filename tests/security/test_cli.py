"""`safeflag token` and `safeflag client add` (contract section 1), run through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from app.cli import app
from app.config import Settings
from app.security.keys import KEY_FILE, SigningKey, load_or_create_issuer_key

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAFEFLAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SAFEFLAG_BASE_URL", "http://127.0.0.1:8080")
    monkeypatch.delenv("SAFEFLAG_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path


def test_token_prints_a_verifiable_jwt_only(env: Path) -> None:
    result = runner.invoke(app, ["token", "--sub", "hv-1", "--role", "health-visitor", "--org", "Organization/z19",
                                 "--practitioner", "PractitionerRole/hv-1", "--care-setting", "1078501000000104",
                                 "--scope", "user/Flag.rs user/Communication.rs", "--ttl", "120"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    key = load_or_create_issuer_key(env)
    claims = jwt.decode(token, key.public_key, algorithms=["ES256"], audience="http://127.0.0.1:8080/fhir")
    assert {k: claims[k] for k in ("iss", "sub", "role", "org", "fhirUser", "care_setting", "scope")} == {
        "iss": "http://127.0.0.1:8080/auth", "sub": "hv-1", "role": "health-visitor", "org": "Organization/z19",
        "fhirUser": "PractitionerRole/hv-1", "care_setting": "1078501000000104",
        "scope": "user/Flag.rs user/Communication.rs"}
    assert claims["exp"] - claims["iat"] == 120
    default = runner.invoke(app, ["token", "--sub", "epr", "--role", "system"])
    assert jwt.decode(default.stdout.strip(), options={"verify_signature": False})["scope"] == "system/*.cruds"


@pytest.mark.parametrize("args, message", [
    (["--role", "superuser"], ("--role must be one of ed-clinician, health-visitor, school-nurse, "
                               "sexual-health-clinician, safeguarding-lead, mash-practitioner, system, admin")),
    (["--role", "admin", "--org", "Practitioner/1"], "--org must look like Organization/<id>, not 'Practitioner/1'"),
    (["--role", "admin", "--scope", "system/*.cruds"],
     "--scope: 'system/*.cruds' is not a SMART v2 user/ resource scope the server knows (e.g. user/Flag.rs)"),
    (["--role", "admin", "--scope", "user/Flag.rs user/Flag.bogus"],
     "--scope: 'user/Flag.bogus' is not a SMART v2 user/ resource scope the server knows (e.g. user/Flag.rs)"),
    (["--role", "system", "--scope", "system/Flag.rs system/Nothing.rs"],
     "--scope: 'system/Nothing.rs' is not a SMART v2 system/ resource scope the server knows (e.g. system/Flag.rs)"),
    (["--role", "admin", "--scope", "openid fhirUser"], "--scope grants nothing to role admin: it needs user/ resource scopes"),
    (["--role", "admin", "--care-setting", "ward"],
     ("--care-setting 'ward' is not one of 1078501000000104, 1326421000000106, 310000008, 788122004, "
      "931821000000105, maternity-triage, out-of-hours, urgent-care, walk-in-centre")),
    (["--role", "admin", "--care-setting", "http://snomed.info/sct|urgent-care"],
     ("--care-setting 'http://snomed.info/sct|urgent-care' is not one of 1078501000000104, 1326421000000106, "
      "310000008, 788122004, 931821000000105, maternity-triage, out-of-hours, urgent-care, walk-in-centre")),
    (["--role", "admin", "--base-url", "127.0.0.1:8092"],
     "--base-url must be an http(s) URL such as http://127.0.0.1:8080, not '127.0.0.1:8092'"),
])
def test_token_refuses_bad_options(env: Path, args: list[str], message: str) -> None:
    """One line naming the option, nothing minted: a misspelt scope is refused, never silently dropped."""
    result = runner.invoke(app, ["token", "--sub", "x", *args])
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")


def test_token_follows_the_base_url(env: Path) -> None:
    """`--base-url` (else SAFEFLAG_BASE_URL) sets the issuer and audience; identity scopes and a care
    setting as `system|code` are accepted."""
    result = runner.invoke(app, ["token", "--sub", "a", "--role", "admin", "--base-url", "http://127.0.0.1:8092/",
                                 "--scope", "openid fhirUser user/Flag.rs",
                                 "--care-setting", "https://fhir.safeflag.example/CodeSystem/care-setting|urgent-care"])
    assert result.exit_code == 0, result.stderr
    key = load_or_create_issuer_key(env)
    claims = jwt.decode(result.stdout.strip(), key.public_key, algorithms=["ES256"], audience="http://127.0.0.1:8092/fhir")
    assert (claims["iss"], claims["scope"]) == ("http://127.0.0.1:8092/auth", "openid fhirUser user/Flag.rs")
    assert claims["care_setting"] == "https://fhir.safeflag.example/CodeSystem/care-setting|urgent-care"


def test_token_refuses_an_unsafe_key(env: Path) -> None:
    load_or_create_issuer_key(env)
    (env / KEY_FILE).chmod(0o644)
    result = runner.invoke(app, ["token", "--sub", "x", "--role", "admin"])
    assert result.exit_code == 2 and "chmod 600" in result.stderr


def test_client_add_registers_and_replaces(env: Path) -> None:
    import asyncio

    from app.security.clients import get_client
    from app.storage.db import create_engine, create_sessionmaker

    key = SigningKey.from_private(ec.generate_private_key(ec.SECP384R1()))
    jwks_file = env / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.jwk()]}))
    args = ["client", "add", "--id", "ed-epr", "--jwks-file", str(jwks_file), "--scope", "system/Encounter.c"]
    first = runner.invoke(app, [*args, "--org", "Organization/ed"])
    assert first.exit_code == 0, first.output
    assert "registered client ed-epr" in first.stderr
    second = runner.invoke(app, [*args[:-1], "system/Encounter.cu system/Flag.rs"])
    assert second.exit_code == 0 and "updated client ed-epr" in second.stderr

    async def stored() -> object:
        engine = create_engine(Settings(data_dir=env, _env_file=None).effective_database_url)  # type: ignore[call-arg]
        try:
            async with create_sessionmaker(engine)() as session:
                return await get_client(session, "ed-epr")
        finally:
            await engine.dispose()

    reg = asyncio.run(stored())
    assert reg.scope == "system/Encounter.cu system/Flag.rs"  # type: ignore[attr-defined]
    assert reg.org is None and reg.jwks["keys"][0]["kid"] == key.kid  # type: ignore[attr-defined]


@pytest.mark.parametrize("content, scope, message", [
    ("{not json", "system/Encounter.c",
     "{path} is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ('{"keys": []}', "system/Encounter.c", "the JWKS must be an object with a non-empty 'keys' list"),
    (None, "user/Flag.rs", "'user/Flag.rs' is not a SMART v2 system/ resource scope (e.g. system/Encounter.c)"),
])
def test_client_add_refuses(env: Path, content: str | None, scope: str, message: str) -> None:
    """One plain line on stderr whatever the path's length (over 200 characters here; Rich used to
    wrap it at 80 columns) and whatever brackets it holds."""
    key = SigningKey.from_private(ec.generate_private_key(ec.SECP384R1()))
    folder = env / ("[deep]-" + "d" * 100) / ("e" * 100)
    folder.mkdir(parents=True)
    jwks_file = folder / "jwks.json"
    assert len(str(jwks_file)) > 200
    jwks_file.write_text(content if content is not None else json.dumps(key.jwk()))
    result = runner.invoke(app, ["client", "add", "--id", "c", "--jwks-file", str(jwks_file), "--scope", scope],
                           env={"COLUMNS": "40"})
    assert result.exit_code == 2
    assert result.stderr == "error: " + message.replace("{path}", str(jwks_file)) + "\n"
    assert result.stdout == ""

"""The command line as an operator and an integrator meet it, with real `safeflag` processes and a real
server on both databases:

- the banner's token hint works as printed for a server on any port (the token follows the server's
  base URL, not :8080);
- SMART Backend Services with nothing but the CLI and HTTP: `client keygen` -> the `client add` and
  `client assertion` commands it prints -> POST /auth/token -> the access token reads the FHIR API;
  `client list` shows the client, `client remove` stops it;
- `serve` on a port already taken says so in one line before any banner.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from app.security.backend import ASSERTION_TYPE
from tests.conftest import _pg_url
from tests.e2e.server import RunningServer, safeflag_command, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return _pg_url(request.getfixturevalue("pg_cluster"), f"cli_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def bare_server(database: str | None) -> Iterator[RunningServer]:
    """A server started with --port only: no SAFEFLAG_BASE_URL anywhere."""
    srv = start_server(database, base_url_env=False, extra_env={"SAFEFLAG_LOG_LEVEL": "WARNING"})
    try:
        yield srv
    finally:
        srv.cleanup()


def _shell(line: str, server: RunningServer) -> subprocess.CompletedProcess[str]:
    """A line run by bash as a user would paste it, in the server's directory and environment (its data
    directory and database, but no SAFEFLAG_BASE_URL)."""
    env = {k: v for k, v in server.env.items() if k != "SAFEFLAG_BASE_URL"}
    return subprocess.run(["bash", "-c", line], env=env, cwd=server.workdir, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_banner_token_hint_works_on_any_port(bare_server: RunningServer) -> None:
    port = bare_server.base_url.rsplit(":", 1)[1]
    assert port != "8080"
    hint = re.search(r"^  mint a token  : TOKEN=\$\((.+)\)$", bare_server.stdout(), re.MULTILINE)
    assert hint is not None, bare_server.stdout()
    assert f"--base-url http://127.0.0.1:{port} " in hint.group(1)
    done = _shell(f"TOKEN=$({hint.group(1)}) && echo $TOKEN", bare_server)
    assert (done.returncode, done.stderr) == (0, ""), done
    token = done.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == (f"http://127.0.0.1:{port}/auth", f"http://127.0.0.1:{port}/fhir")
    r = httpx.get(bare_server.fhir_base + "/Patient", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    # the same command without --base-url mints for :8080, which this server refuses
    plain = _shell(hint.group(1).replace(f" --base-url http://127.0.0.1:{port}", ""), bare_server)
    r = httpx.get(bare_server.fhir_base + "/Patient", headers={"Authorization": f"Bearer {plain.stdout.strip()}"},
                  timeout=30)
    assert r.status_code == 401
    assert r.json()["issue"][0]["diagnostics"] == "SF-0811: Invalid bearer token: the token's issuer is not trusted here"


def _printed(out: str, label: str) -> str:
    m = re.search(rf"^{label}\s+: (.+)$", out, re.MULTILINE)
    assert m is not None, out
    return m.group(1)


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_backend_services_with_the_cli_end_to_end(bare_server: RunningServer, alg: str) -> None:
    srv, base = bare_server, bare_server.base_url
    keygen = _shell(f"{' '.join(safeflag_command())} client keygen --id ed-epr --alg {alg} "
                    f"--scope 'system/Patient.rs system/Encounter.cru' --org Organization/ed --base-url {base}", srv)
    assert (keygen.returncode, keygen.stderr) == (0, ""), keygen
    assert (srv.workdir / "ed-epr.key.pem").stat().st_mode & 0o777 == 0o600
    jwks = json.loads((srv.workdir / "ed-epr.jwks.json").read_text())
    assert [(k["kty"], k["alg"], k["use"]) for k in jwks["keys"]] == [("EC" if alg == "ES384" else "RSA", alg, "sig")]
    add = _shell(_printed(keygen.stdout, "register"), srv)
    registered = "registered client ed-epr (1 key(s); scopes: system/Patient.rs system/Encounter.cru)\n"
    assert (add.returncode, add.stderr) == (0, registered), add
    listed = _shell(f"{' '.join(safeflag_command())} client list", srv)
    assert listed.stdout == (f"ed-epr\tOrganization/ed\tsystem/Patient.rs system/Encounter.cru\t"
                             f"{jwks['keys'][0]['kid']}\n")
    sign = _printed(keygen.stdout, "sign")
    assert sign.endswith(f"--token-url {base}/auth/token)")
    signed = _shell(f"{sign} && echo $ASSERTION", srv)
    assert (signed.returncode, signed.stderr) == (0, ""), signed
    assertion = signed.stdout.strip()
    header, claims = jwt.get_unverified_header(assertion), jwt.decode(assertion, options={"verify_signature": False})
    assert (header["alg"], header["kid"], header["typ"]) == (alg, jwks["keys"][0]["kid"], "JWT")
    assert (claims["iss"], claims["sub"], claims["aud"], claims["exp"] - claims["iat"]) == (
        "ed-epr", "ed-epr", f"{base}/auth/token", 300)

    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, "scope": "system/Patient.rs"}
    r = httpx.post(f"{base}/auth/token", data=form, timeout=30)
    assert r.status_code == 200, r.text
    assert (r.json()["token_type"], r.json()["scope"], r.json()["expires_in"]) == ("bearer", "system/Patient.rs", 300)
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    found = httpx.get(f"{base}/fhir/Patient", headers=bearer, timeout=30)
    assert (found.status_code, found.json()["resourceType"]) == (200, "Bundle")
    replay = httpx.post(f"{base}/auth/token", data=form, timeout=30)
    assert (replay.status_code, replay.json()) == (401, {
        "error": "invalid_client", "error_description": "client_assertion jti was already used"})

    removed = _shell(f"{' '.join(safeflag_command())} client remove --id ed-epr", srv)
    assert (removed.returncode, removed.stderr) == (0, "removed client ed-epr\n")
    fresh = _shell(f"{sign} && echo $ASSERTION", srv).stdout.strip()
    refused = httpx.post(f"{base}/auth/token", data={**form, "client_assertion": fresh}, timeout=30)
    assert (refused.status_code, refused.json()) == (401, {"error": "invalid_client", "error_description": "unknown client"})
    assert _shell(f"{' '.join(safeflag_command())} client list", srv).stdout == ""
    again = _shell(f"{' '.join(safeflag_command())} client remove --id ed-epr", srv)
    assert (again.returncode, again.stderr) == (2, "error: no client 'ed-epr' is registered\n")


def test_serve_on_a_busy_port_says_so_before_any_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
        env["SAFEFLAG_DATA_DIR"] = str(tmp_path / "data")
        done = subprocess.run([*safeflag_command(), "serve", "--port", str(port)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: cannot listen on 127.0.0.1:{port}: the address is already in use\n"
    assert not (tmp_path / "data" / "safeflag.db").exists()  # refused before migrating

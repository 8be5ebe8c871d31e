"""HAPI FHIR's Java generic client (`IGenericClient`, 8.8.0) against a real `safeflag serve`, on SQLite
and PostgreSQL: `org.safeflag.hapi.ClientRun` (in the launcher jar) creates, updates, JSON-patches and
reads an Organization and reads it again with `If-None-Match`, printing the id the client got from each
answer. HAPI's client takes a write's id from `Location`/`Content-Location` only: without them
`client.update().execute().getId()` is null. The second run sends every body gzip-compressed
(HAPI's `GZipContentInterceptor`)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _pg_url
from tests.e2e.server import RunningServer, start_server

pytestmark = pytest.mark.hapi

CLIENT_MAIN = "org.safeflag.hapi.ClientRun"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def safeflag(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    url = None
    if request.param == "pg":
        url = _pg_url(request.getfixturevalue("pg_cluster"), "hapi_generic_client")
    srv = start_server(url, args=("--no-dispatcher",))
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_hapi_generic_client_gets_every_write_id(hapi_jar: Path, safeflag: RunningServer, compress: bool) -> None:
    token = safeflag.headers["Authorization"].removeprefix("Bearer ")
    cmd = ["java", f"-Dloader.main={CLIENT_MAIN}", "-jar", str(hapi_jar), safeflag.fhir_base, token]
    out = subprocess.run([*cmd, *(["gzip"] if compress else [])], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    created = re.fullmatch(rf"{re.escape(safeflag.fhir_base)}/Organization/({UUID})/_history/1", lines["create"])
    assert created, out.stdout
    oid = created.group(1)
    assert {k: lines[k] for k in ("update", "patch", "read", "name", "not-modified")} == {
        "update": f"{safeflag.fhir_base}/Organization/{oid}/_history/2",
        "patch": f"{safeflag.fhir_base}/Organization/{oid}/_history/3",
        "read": f"Organization/{oid}/_history/3",  # from the body: meta.versionId
        "name": "HAPI generic client, patched",
        "not-modified": "true",
    }

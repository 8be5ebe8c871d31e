"""A server whose database is not at its release's schema (started with `--no-migrate` on an empty
database, or a new release before `safeflag migrate`) says so and never fails with a 500: `/readyz`
answers 503 with the reason, FHIR requests answer 503 with an OperationOutcome naming the command, the
dispatcher says it once in one log line (no traceback every poll), and once `safeflag migrate` has run
the same process serves without a restart. On SQLite and PostgreSQL, with a real `safeflag serve`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import _pg_url
from tests.e2e.server import RunningServer, start_server

pytestmark = pytest.mark.e2e

NOT_MIGRATED = {"resourceType": "OperationOutcome", "issue": [{
    "severity": "error", "code": "transient",
    "diagnostics": "SF-0963: The database is not at this release's schema: the operator must run `safeflag migrate`",
}]}


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    url = _pg_url(request.getfixturevalue("pg_cluster"), "unmigrated") if request.param == "pg" else None
    running = start_server(url, args=("--no-migrate",), ready=False)
    try:
        yield running
    finally:
        running.stop()
        running.cleanup()


def test_an_unmigrated_database_is_503_then_served_after_migrate(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
        assert ready.json()["migrations"]["current"] is None
        assert ready.json()["detail"].endswith("run `safeflag migrate`")
        assert http.get("/fhir/metadata").status_code == 200  # needs no database
        for response in (http.get("/fhir/Patient/p1"), http.get("/fhir/Flag?status=active"),
                         http.post("/fhir/Patient", json={"resourceType": "Patient"},
                                   headers={"Content-Type": "application/fhir+json"})):
            assert response.status_code == 503, response.text
            assert response.json() == NOT_MIGRATED
            assert response.headers["Retry-After"] == "5"

        time.sleep(1.5)  # three dispatcher polls
        records = server.log_records()
        assert not any("Traceback" in line for line in server.stderr_lines())
        # the only errors are the request lines of the four 503s above (/readyz and three FHIR requests)
        assert [(r["msg"], r["status"]) for r in records if r["level"] == "ERROR"] == [("request", 503)] * 4
        waiting = [r for r in records if str(r.get("msg", "")).startswith("dispatcher waiting")]
        assert [r["level"] for r in waiting] == ["WARNING"]
        assert "SF-0963" in str(waiting[0]["msg"])

        migrated = subprocess.run([*server.command, "migrate"], env=server.env, cwd=server.workdir,
                                  capture_output=True, text=True, timeout=300, check=False)
        assert migrated.returncode == 0, migrated.stderr
        assert http.get("/readyz").status_code == 200
        created = http.post("/fhir/Patient", json={"resourceType": "Patient"},
                            headers={"Content-Type": "application/fhir+json"})
        assert created.status_code == 201, created.text

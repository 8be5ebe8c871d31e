"""`safeflag serve` with the test clock: what the server dates is at the clock's instant, whatever the
day the tests run, and it goes on (never back) across a restart; without the test switch, or on a bind
that is not loopback, the server refuses to start. SQLite (the clock is the process's, not the database's)."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import TEST_CLOCK, safeflag_command, start_server
from tests.support.postgres import free_port

pytestmark = pytest.mark.e2e

PATIENT = {"resourceType": "Patient", "identifier": [
    {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990001235"}], "birthDate": "2024-06-01"}


def _updated(resp: httpx.Response) -> datetime:
    assert resp.status_code in (200, 201), resp.text
    return datetime.fromisoformat(resp.json()["meta"]["lastUpdated"])


def test_the_server_dates_its_writes_by_the_test_clock_and_carries_it_over_a_restart() -> None:
    server = start_server()
    try:
        with httpx.Client(base_url=server.fhir_base, headers=server.headers, timeout=30) as api:
            first = _updated(api.post("/Patient", json=PATIENT))
            assert TEST_CLOCK <= first <= server.now()
            server.kill9()
            server.restart()
            second = _updated(api.post("/Patient", json={**PATIENT, "identifier": [
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990001243"}]}))
            assert first < second <= server.now()
    finally:
        server.cleanup()


@pytest.mark.parametrize(("env", "host", "message"), [
    ({"SAFEFLAG_TEST_CLOCK": "2026-03-04T10:00:00Z"}, "127.0.0.1",
     "refusing to start: SAFEFLAG_TEST_CLOCK is for test runs only and needs SAFEFLAG_TESTING=true"),
    ({"SAFEFLAG_TEST_CLOCK": "2026-03-04T10:00:00Z", "SAFEFLAG_TESTING": "true"}, "0.0.0.0",
     "refusing to start: SAFEFLAG_TEST_CLOCK is allowed only on a loopback address, not 0.0.0.0"),
])
def test_serve_refuses_the_test_clock_outside_a_loopback_test_run(tmp_path: Path, env: dict[str, str], host: str,
                                                                  message: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    clean.update(SAFEFLAG_DATA_DIR=str(tmp_path / "data"), **env)
    done = subprocess.run([*safeflag_command(), "serve", "--host", host, "--port", str(free_port())], env=clean,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: {message}\n")
    assert not (tmp_path / "data" / "safeflag.db").exists()  # refused before anything else


def test_the_dispatcher_refuses_the_test_clock_without_the_test_switch(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    clean.update(SAFEFLAG_DATA_DIR=str(tmp_path / "data"), SAFEFLAG_TEST_CLOCK="2026-03-04T10:00:00Z")
    done = subprocess.run([*safeflag_command(), "dispatcher"], env=clean, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", "error: refusing to start: SAFEFLAG_TEST_CLOCK is for test runs only and needs SAFEFLAG_TESTING=true\n")
    assert not (tmp_path / "data" / "safeflag.db").exists()

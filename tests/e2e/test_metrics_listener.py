"""Prometheus without a token: `SAFEFLAG_METRICS_BIND` opens a loopback-only listener that answers
`GET /metrics` (and nothing else) from a real server on both databases, while `/metrics` on the API
port still needs an admin or system token; a bind that is not loopback is refused at start."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _pg_url
from tests.e2e.server import RunningServer, safeflag_command, start_server
from tests.support.postgres import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def scraped(request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, str]]:
    database = None if request.param == "sqlite" else _pg_url(request.getfixturevalue("pg_cluster"),
                                                               f"metrics_{uuid.uuid4().hex[:10]}")
    bind = f"127.0.0.1:{free_port()}"
    srv = start_server(database, extra_env={"SAFEFLAG_METRICS_BIND": bind, "SAFEFLAG_LOG_LEVEL": "WARNING"})
    try:
        yield srv, f"http://{bind}"
    finally:
        srv.cleanup()


def test_scrape_without_a_token_on_loopback_only(scraped: tuple[RunningServer, str]) -> None:
    srv, scrape = scraped
    assert f"metrics without a token: {scrape}/metrics" in srv.stdout()
    assert httpx.get(srv.fhir_base + "/Patient", headers=srv.headers, timeout=30).status_code == 200
    r = httpx.get(scrape + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'safeflag_http_requests_total{interaction="search_type",status="200"} 1.0' in r.text
    assert "# TYPE safeguarding_tasks_open gauge" in r.text  # read from the database at scrape time
    head = httpx.head(scrape + "/metrics", timeout=30)
    assert (head.status_code, head.content, int(head.headers["content-length"]) > 0) == (200, b"", True)
    other = httpx.get(scrape + "/fhir/Patient", timeout=30)
    assert (other.status_code, other.text) == (404, "only /metrics is served here\n")
    post = httpx.post(scrape + "/metrics", timeout=30)
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
    # the API port's /metrics still needs an admin or system token; /openapi.json is open
    assert httpx.get(srv.base_url + "/openapi.json", timeout=30).json()["openapi"].startswith("3.")
    assert httpx.get(srv.base_url + "/metrics", timeout=30).status_code == 401
    assert httpx.get(srv.base_url + "/metrics", headers=srv.headers, timeout=30).status_code == 200
    # a client that sends no request head is closed, and the listener goes on answering
    with socket.create_connection(("127.0.0.1", int(scrape.rsplit(":", 1)[1])), timeout=30) as idle:
        idle.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 9000)
        assert idle.recv(100) == b""
    assert httpx.get(scrape + "/metrics", timeout=30).status_code == 200


@pytest.mark.parametrize("bind", ["0.0.0.0:9464", "10.1.2.3:9464", "127.0.0.1", "localhost:0", "[::]:9464"])
def test_a_bind_that_is_not_loopback_is_refused(tmp_path: Path, bind: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    env.update(SAFEFLAG_DATA_DIR=str(tmp_path / "data"), SAFEFLAG_METRICS_BIND=bind)
    done = subprocess.run([*safeflag_command(), "serve", "--port", str(free_port())], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"error: SAFEFLAG_METRICS_BIND must be a loopback address and port such as "
                           f"127.0.0.1:9464, not '{bind}'\n")

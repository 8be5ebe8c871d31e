"""Operations endpoints (contract section 2): /healthz, /readyz, /metrics, and X-Request-Id on every
response, errors included."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.context import AppContext
from app.main import create_app
from app.observability import internal_error_outcome
from app.resource_rules import resource_rules
from app.storage.migrate import head_revision
from tests.conftest import BASE_URL, _pg_url
from tests.support.fhir_data import patient
from tests.support.postgres import PgCluster, free_port


def _settings(url: str) -> Settings:
    return Settings(data_dir=Path(tempfile.mkdtemp(prefix="safeflag-ops-")), database_url=url,  # type: ignore[call-arg]
                    base_url=BASE_URL, dispatcher_in_process=False, _env_file=None)


@asynccontextmanager
async def _client_for(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx=ctx))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def unmigrated(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A client over a brand-new, empty database (no `safeflag migrate` yet)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='safeflag-ops-')}/fresh.db"
    else:
        cluster: PgCluster | None = request.getfixturevalue("pg_cluster")
        url = _pg_url(cluster, f"ops_fresh_{uuid.uuid4().hex[:8]}")
    ctx = AppContext.from_settings(_settings(url), interceptors=resource_rules())
    try:
        async with _client_for(ctx) as c:
            yield c
    finally:
        await ctx.close()


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_when_migrated(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "reachable", "migrations": {"current": head_revision()}}


async def test_readyz_on_an_unmigrated_database(unmigrated: httpx.AsyncClient) -> None:
    r = await unmigrated.get("/readyz")
    assert r.status_code == 503
    head = head_revision()
    assert r.json() == {
        "status": "unavailable",
        "database": "reachable",
        "migrations": {"current": None, "head": head},
        "detail": f"The database schema is at migration none but this build needs {head}: run `safeflag migrate`",
    }
    assert (await unmigrated.get("/healthz")).status_code == 200  # the process itself is up


async def test_readyz_when_the_database_is_unreachable() -> None:
    ctx = AppContext.from_settings(_settings(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"), interceptors=resource_rules())
    try:
        async with _client_for(ctx) as c:
            r = await c.get("/readyz")
    finally:
        await ctx.close()
    assert r.status_code == 503
    assert r.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "detail": "Cannot reach the database (ConnectionRefusedError); check SAFEFLAG_DATABASE_URL "
                  "and that the database server is running",
    }


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics(client: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    assert (await client.post("/fhir/Patient", json=patient())).status_code == 201
    assert (await client.post("/fhir/Patient", json=patient("9990000026"))).status_code == 201
    assert (await client.get("/fhir/Patient/unknown")).status_code == 404
    assert (await client.get("/no/such/endpoint")).status_code == 404
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = _samples(r.text)
    requests = {labels: v for (name, labels), v in samples.items() if name == "safeflag_http_requests_total"}
    assert requests == {
        (("interaction", "create"), ("status", "201")): 2.0,
        (("interaction", "read"), ("status", "404")): 1.0,
        (("interaction", "unmatched"), ("status", "404")): 1.0,
    }
    latency = "safeflag_http_request_duration_seconds"
    assert samples[(f"{latency}_count", (("interaction", "create"),))] == 2.0
    assert samples[(f"{latency}_bucket", (("interaction", "create"), ("le", "+Inf")))] == 2.0
    assert samples[(f"{latency}_bucket", (("interaction", "read"), ("le", "5.0")))] == 1.0
    pool_size = 1 if clean_ctx.settings.is_sqlite else clean_ctx.settings.db_pool_size
    assert samples[("safeflag_db_pool_size", ())] == pool_size
    assert samples[("safeflag_db_pool_checked_out", ())] == 0.0
    assert samples[("safeflag_db_pool_overflow", ())] == 0.0
    assert samples[("safeflag_http_requests_in_progress", ())] == 1.0  # the scrape itself


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    for rid in ("abc-123", "0f5e7c1a-8a6d-4d1e-9b8e-3c2a1d0e9f8b", "epr.ed:42_x"):
        r = await client.get("/healthz", headers={"X-Request-Id": rid})
        assert r.headers["x-request-id"] == rid


async def test_request_id_is_generated_when_absent_or_unsafe(client: httpx.AsyncClient) -> None:
    seen = set()
    for headers in ({}, {"X-Request-Id": ""}, {"X-Request-Id": "two words"}, {"X-Request-Id": "x" * 129},
                    {"X-Request-Id": "<script>"}, {"X-Request-Id": b"caf\xe9"}):
        r = await client.get("/healthz", headers=headers)
        rid = r.headers["x-request-id"]
        assert uuid.UUID(rid).version == 4
        seen.add(rid)
    assert len(seen) == 6


ERRORS = [
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "application/fhir+json"}, b"{not json", 400, id="400"),
    pytest.param("GET", "/fhir/Nonsense/1", {}, None, 404, id="404-type"),
    pytest.param("GET", "/no/such/endpoint", {}, None, 404, id="404-route"),
    pytest.param("POST", "/healthz", {}, None, 405, id="405"),
    pytest.param("GET", "/fhir/Patient/x", {"Accept": "application/fhir+xml"}, None, 406, id="406"),
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "application/fhir+json", "Content-Length": "999999999"},
                 b"{}", 413, id="413"),
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "application/fhir+xml"}, b"<Patient/>", 415, id="415"),
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "application/fhir+json"},
                 orjson.dumps(patient("9990000019")), 422, id="422"),  # bad Modulus 11 check digit
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), ERRORS)
async def test_error_responses_carry_the_request_id(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    rid = f"err-{status}"
    r = await client.request(method, path, headers={**headers, "X-Request-Id": rid}, content=body)
    assert r.status_code == status
    assert r.headers["x-request-id"] == rid
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_unexpected_error_is_500_with_request_id_and_logged(
    clean_ctx: AppContext, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(ctx=clean_ctx)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom, name="boom")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        r = await c.get("/boom", headers={"X-Request-Id": "bug-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "bug-1"
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert r.json() == internal_error_outcome()
    logged = [orjson.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    ours = [rec for rec in logged if rec.get("request_id") == "bug-1"]
    assert [(rec["msg"], rec["level"], rec.get("status")) for rec in ours] == [
        ("unhandled error", "ERROR", None),
        ("request", "ERROR", 500),
    ]
    assert "RuntimeError: a bug" in ours[0]["exc"]

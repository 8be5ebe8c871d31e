"""While PostgreSQL is down or restarting, requests answer 503 `transient` with `Retry-After` (not 500),
`/readyz` says the database is unreachable, and once it is back the same process answers again (the
pool reconnects; no restart). A statement past `SAFEFLAG_STATEMENT_TIMEOUT_SECONDS` is stopped by
PostgreSQL and answered 503 `timeout`. A dedicated cluster, started and stopped here, so that the
session's cluster stays up."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.config import Settings
from app.context import AppContext
from app.errors import ServiceUnavailable
from app.main import create_app
from app.resource_rules import resource_rules
from app.storage.migrate import upgrade
from tests.conftest import BASE_URL, REQUIRE_PG, admin_token
from tests.support.fhir_data import outcome, patient
from tests.support.postgres import PgCluster, start_cluster

pytestmark = pytest.mark.pg

UNAVAILABLE = outcome("transient", "SF-0960: The database is unavailable; retry later")


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    if os.environ.get("SAFEFLAG_TEST_PG_URL"):
        pytest.skip("needs a cluster of its own to stop and start")
    try:
        cluster = start_cluster()
    except (FileNotFoundError, OSError) as exc:
        if REQUIRE_PG:
            pytest.fail(f"SAFEFLAG_REQUIRE_PG=1 but PostgreSQL could not be started: {exc}")
        pytest.skip("PostgreSQL binaries not installed")
    try:
        yield cluster
    finally:
        cluster.stop()


async def _context(cluster: PgCluster, **settings: object) -> AppContext:
    cluster.psql("CREATE DATABASE safeflag_down")
    data = Path(tempfile.mkdtemp(prefix="safeflag-down-"))
    ctx = AppContext.from_settings(Settings(data_dir=data, database_url=cluster.url("safeflag_down"),
                                            base_url=BASE_URL, dispatcher_in_process=False, rate_limit_per_second=0,
                                            _env_file=None, **settings), interceptors=resource_rules())  # type: ignore[arg-type]
    await upgrade(ctx.engine)
    return ctx


@pytest.fixture
async def down_client(own_cluster: PgCluster) -> AsyncIterator[httpx.AsyncClient]:
    ctx = await _context(own_cluster)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)), base_url=BASE_URL,
                                     headers={"Authorization": f"Bearer {admin_token(ctx)}"}) as c:
            yield c
    finally:
        await ctx.close()


async def test_database_down_is_503_with_retry_after_and_recovers(down_client: httpx.AsyncClient,
                                                                  own_cluster: PgCluster) -> None:
    created = await down_client.post("/fhir/Patient", json=patient())
    assert created.status_code == 201
    pid = created.json()["id"]
    assert (await down_client.get("/readyz")).status_code == 200
    own_cluster.halt()
    for r in (await down_client.get(f"/fhir/Patient/{pid}"),  # its pooled connection died with the server
              await down_client.get(f"/fhir/Patient/{pid}"),  # no server to connect to
              await down_client.post("/fhir/Patient", json=patient("9990000026")),
              await down_client.get("/fhir/Patient?gender=male")):
        assert (r.status_code, r.headers["retry-after"], r.json()) == (503, "5", UNAVAILABLE)
    ready = await down_client.get("/readyz")
    assert (ready.status_code, ready.headers["retry-after"]) == (503, "5")
    assert ready.json() == {"status": "unavailable", "database": "unreachable", "detail": (
        "Cannot reach the database (ConnectionRefusedError); check SAFEFLAG_DATABASE_URL and that the database "
        "server is running")}
    own_cluster.restart()
    # the same process answers again: no restart needed, nothing lost, nothing half-written
    assert (await down_client.get("/readyz")).status_code == 200
    again = await down_client.get(f"/fhir/Patient/{pid}")
    assert (again.status_code, again.json()["id"]) == (200, pid)
    assert (await down_client.get("/fhir/Patient?_summary=count")).json()["total"] == 1


async def test_a_statement_past_the_timeout_is_stopped_and_answered_503(own_cluster: PgCluster) -> None:
    ctx = await _context(own_cluster, statement_timeout_seconds=0.2)
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            async with ctx.unit_of_work() as svc:
                await svc.session.execute(text("SELECT pg_sleep(30)"))
        assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "5"}
        assert caught.value.outcome() == outcome(
            "timeout", "SF-0961: The database did not finish the request in time and it was stopped; retry later, "
            "or narrow the search")
        async with ctx.engine.connect() as conn:  # the backend is free again: nothing still runs pg_sleep
            running = (await conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"))).scalar_one()
            assert running == 0
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "200ms"
    finally:
        await ctx.close()

"""Test fixtures: every API test runs on SQLite and on a real throwaway PostgreSQL.

`SAFEFLAG_REQUIRE_PG=1` turns a missing PostgreSQL into a failure instead of a skip (CI sets it).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from app.config import Settings
from app.context import AppContext, SystemClock
from app.interactions.service import FhirService
from app.main import create_app
from app.resource_rules import resource_rules
from app.security.tokens import default_scope
from app.storage.contents import changed_in_place, check_unchanged
from app.storage.migrate import upgrade
from app.storage.tables import metadata
from tests.security.tokens_fixture import auth, issuer, issuer_for, mint  # noqa: F401  (fixtures)
from tests.support import queue_check
from tests.support.audit import cut_everything
from tests.support.postgres import PgCluster, start_cluster
from tests.support.receiver import Receiver

BASE_URL = "http://127.0.0.1:8080"
FHIR = BASE_URL + "/fhir"
REQUIRE_PG = os.environ.get("SAFEFLAG_REQUIRE_PG") == "1"
queue_check.install()  # every test also checks that queued rows are flushed before they are read


@pytest.fixture(autouse=True)
def _kept_records_unchanged() -> Iterator[None]:
    """Every test also checks that no record's content kept between requests (app/storage/contents.py)
    was changed in place: each time one is taken, and all of them once the test is over."""
    check_unchanged(True)  # what earlier tests kept is dropped: each test checks its own
    yield
    assert changed_in_place() == [], "records kept between requests were changed in place"


class StepClock:
    """Deterministic clock: each call is one second after the previous one (architecture principle 8)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


class RunningClock:
    """A real-time clock that starts at a fixed instant: time passes as it really does (delivery,
    leases and retries are real) while the date and weekday are fixed, so no outcome depends on the
    day the suite runs. Default start: Wednesday 4 March 2026, 10:00 UTC (GMT, no bank holiday near)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.reset(start)

    def reset(self, start: datetime | None = None) -> None:
        self.start = start or datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC)
        self.origin = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.origin)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster | None]:
    external = os.environ.get("SAFEFLAG_TEST_PG_URL")
    if external:
        yield None
        return
    try:
        cluster = start_cluster()
    except (FileNotFoundError, OSError) as exc:
        if REQUIRE_PG:
            pytest.fail(f"SAFEFLAG_REQUIRE_PG=1 but PostgreSQL could not be started: {exc}")
        yield None
        return
    try:
        yield cluster
    finally:
        cluster.stop()


def _pg_url(cluster: PgCluster | None, dbname: str) -> str:
    external = os.environ.get("SAFEFLAG_TEST_PG_URL")
    if external:
        return external
    if cluster is None:
        if REQUIRE_PG:
            pytest.fail("SAFEFLAG_REQUIRE_PG=1 but no PostgreSQL is available")
        pytest.skip("PostgreSQL binaries not installed (set SAFEFLAG_REQUIRE_PG=1 to fail instead)")
    cluster.psql(f"CREATE DATABASE {dbname}")
    return cluster.url(dbname)


@pytest.fixture(scope="session")
def clock() -> StepClock:
    return StepClock()


class AuditedAtRealTime(AppContext):
    """AuditEvents take the real time, so that audited reads do not move the resources' StepClock times."""

    @asynccontextmanager
    async def unit_of_work(self, *args: Any, **kw: Any) -> AsyncIterator[FhirService]:
        async with super().unit_of_work(*args, **kw) as svc:
            svc.guard.now = SystemClock().now
            yield svc


@pytest.fixture(scope="session", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def ctx(request: pytest.FixtureRequest, pg_cluster: PgCluster | None, clock: StepClock) -> AsyncIterator[AppContext]:
    tmp = Path(tempfile.mkdtemp(prefix="safeflag-test-"))
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'test.db'}"
    else:
        url = _pg_url(pg_cluster, "safeflag_api")
    # gc_freeze off: the test process's own heap is left to the collector as it always was (the keeper,
    # app/heap.py, runs in every real server the end-to-end and browser tests start, and in tests/unit/test_heap.py)
    settings = Settings(data_dir=tmp, database_url=url, base_url=BASE_URL, dispatcher_in_process=False,
                        rate_limit_per_second=0, gc_freeze=False, _env_file=None)  # type: ignore[call-arg]
    # AuditEvents take the real time so that audited reads do not move the resources' StepClock times
    context = AuditedAtRealTime.from_settings(settings, clock=clock, interceptors=resource_rules())
    await upgrade(context.engine)
    try:
        yield context
    finally:
        await context.close()


async def forget_lanes(ctx: AppContext) -> None:
    """After `empty_tables`: new database sessions, so that no connection continues its audit lane from
    the last row it committed (app/security/audit_trail.py keeps it per connection on PostgreSQL), a row
    the emptying removed."""
    if not ctx.settings.is_sqlite:
        await ctx.engine.dispose()


async def empty_tables(conn: AsyncConnection) -> None:
    """Delete every row; the audit trail's through its one sanctioned removal (the database refuses any
    other DELETE of audit rows, app/storage/audit_guards.py)."""
    await conn.run_sync(lambda sync: cut_everything(sync, now=datetime(2026, 1, 1)))
    for table in reversed(metadata.sorted_tables):
        await conn.execute(delete(table))


@pytest.fixture
async def clean_ctx(ctx: AppContext, clock: StepClock) -> AppContext:
    """The session's context with every table emptied and the clock reset."""
    async with ctx.engine.begin() as conn:
        await empty_tables(conn)
    await forget_lanes(ctx)
    clock.reset()
    return ctx


@pytest.fixture
async def client(clean_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """An API client that carries an admin token by default (tests of access control pass their own
    `Authorization` header, from the `auth` fixture)."""
    app = create_app(ctx=clean_ctx)
    transport = httpx.ASGITransport(app=app)
    token = admin_token(clean_ctx)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def admin_token(ctx: AppContext) -> str:
    return issuer_for(ctx).mint(sub="test-admin", role="admin", scope=default_scope("admin"), ttl=3600)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP receiver for webhook deliveries (tests/support/receiver.py), stopped after the test."""
    async with Receiver() as r:
        yield r

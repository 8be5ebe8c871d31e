"""The lane's last row kept per connection (app/security/audit_trail.py): on PostgreSQL a transaction
that appends to the audit trail reads its lane's last row only when its connection has not committed an
audit row since it took the lane; otherwise it continues from the row that connection committed last.
Checked with real PostgreSQL sessions, and the same sequences on SQLite (which always reads the row):

- two writers with transactions interleaved: each continues its own lane, and reads its last row once;
- a rolled-back transaction (and a rolled-back savepoint) followed by a committed one: no gap, no row
  linked to one that never committed, and the lane's last row is read again after the rollback;
- a lane taken over by another process after the first one's session ended: the first process never
  continues the lane from what it remembered, and goes on in a lane of its own;
- a lane archived up to its last row: the next row follows the cut;
then `safeflag audit verify` (app/security/audit_verify.py) finds each trail clean.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.main import create_app
from app.resource_rules import resource_rules
from app.security.audit import audit_for
from app.security.audit_trail import append
from app.security.audit_verify import verify
from app.storage.audit_tables import audit_event
from app.storage.buffer import flush
from app.storage.migrate import upgrade
from app.stored import format_instant
from tests.conftest import BASE_URL, admin_token
from tests.safeguarding.support import example
from tests.security.test_audit_search import BASE, principal
from tests.support.audit import cut_everything
from tests.support.fresh_db import fresh_context
from tests.support.postgres import PgCluster

_DATABASES = itertools.count()
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
_N = itertools.count()


def _event() -> dict[str, Any]:
    n = next(_N)
    at = START + timedelta(seconds=n)
    doc = audit_for(interaction="read", principal=principal("lead"), recorded=at, resource_type="Flag",
                    res_id=f"flag-{n}", version_id=1, patients=["Patient/child-a"])
    stamp = format_instant(at.replace(tzinfo=None))
    return {"resourceType": "AuditEvent", "id": f"lane-ev-{n:04d}", "meta": {"versionId": "1", "lastUpdated": stamp},
            **{k: v for k, v in doc.items() if k not in ("resourceType", "id", "meta")}}


async def _append(session: AsyncSession) -> str:
    content = _event()
    await append(session, content, event_id=content["id"], recorded=START.replace(tzinfo=None), org=None, base=BASE)
    return str(content["id"])


def _head_reads(ctx: AppContext) -> list[str]:
    """Every statement that reads a lane's last row, as the engine runs them."""
    seen: list[str] = []

    @event.listens_for(ctx.engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "audit_event.lane =" in statement:
            seen.append(statement)
    return seen


async def _lanes(ctx: AppContext) -> dict[int, list[str]]:
    e = audit_event.c
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(select(e.lane, e.position, e.event_id).order_by(e.lane, e.position))).all()
        report = await conn.run_sync(verify)
    assert report.clean, report.findings
    lanes: dict[int, list[str]] = {}
    for lane, position, event_id in rows:
        assert position == len(lanes.setdefault(lane, [])) + 1  # gap-free from 1
        lanes[lane].append(event_id)
    return lanes


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def db(request: pytest.FixtureRequest, pg_cluster: PgCluster | None) -> AsyncIterator[AppContext]:
    async with fresh_context(request.param, pg_cluster, f"safeflag_audit_lanes_{next(_DATABASES)}") as ctx:
        await upgrade(ctx.engine)
        yield ctx


@pytest.fixture
async def pg(pg_cluster: PgCluster | None) -> AsyncIterator[AppContext]:
    async with fresh_context("pg", pg_cluster, f"safeflag_audit_lanes_{next(_DATABASES)}") as ctx:
        await upgrade(ctx.engine)
        yield ctx


async def test_a_rolled_back_transaction_leaves_nothing_to_continue_from(db: AppContext) -> None:
    reads = _head_reads(db)
    pg = not db.settings.is_sqlite
    async with db.sessionmaker() as session:
        committed = []
        async with session.begin():
            committed.append(await _append(session))
            await flush(session)
        async with session.begin():  # continues from the row committed last (PostgreSQL: without reading it)
            committed.append(await _append(session))
            await flush(session)
        assert len(reads) == (1 if pg else 2)
        await session.begin()
        await _append(session)
        await flush(session)  # the row is in the database, then the transaction rolls back
        await session.rollback()
        async with session.begin():  # reads the lane's last row again: the rolled-back row is not it
            committed.append(await _append(session))
            await flush(session)
        assert len(reads) == (2 if pg else 4)
        async with session.begin():  # a savepoint that rolls back takes its row, the transaction keeps its own
            committed.append(await _append(session))
            await flush(session)
            savepoint = await session.begin_nested()
            await _append(session)
            await flush(session)
            await savepoint.rollback()
            committed.append(await _append(session))
            await flush(session)
        async with session.begin():
            committed.append(await _append(session))
            await flush(session)
    assert await _lanes(db) == {0: committed}
    assert len(reads) == (3 if pg else 7)  # read again after the savepoint's rollback, not after that commit


@pytest.mark.pg
async def test_two_writers_interleaved_each_continue_their_own_lane(pg: AppContext) -> None:
    reads = _head_reads(pg)
    one, two = pg.sessionmaker(), pg.sessionmaker()
    written: dict[int, list[str]] = {}
    for _ in range(3):
        await one.begin()
        await two.begin()
        first = await _append(one)
        second = await _append(two)
        for session, event_id in ((one, first), (two, second)):
            await flush(session)
            lane = (await session.execute(select(audit_event.c.lane).where(audit_event.c.event_id == event_id)
                                          )).scalar_one()
            written.setdefault(lane, []).append(event_id)
        await two.commit()
        await one.commit()
    await one.close()
    await two.close()
    assert await _lanes(pg) == written and sorted(written) == [0, 1]
    assert len(reads) == 2  # once per connection: later transactions continue from what it committed


@pytest.mark.pg
async def test_a_lane_taken_over_by_another_process_is_not_continued_from_memory(
        pg: AppContext) -> None:
    """Process one commits to lane 0 and its session then ends (the database ends it); process two takes
    lane 0 and continues it. Process one's next transaction fails on its dead connection, and the one
    after takes another lane: it never appends to lane 0 from the row it remembered."""
    other = AppContext.from_settings(pg.settings, interceptors=resource_rules())  # its own pool: another process
    try:
        async with pg.sessionmaker() as session, session.begin():
            first = await _append(session)
            await flush(session)
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with other.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        async with other.sessionmaker() as session, session.begin():
            second = await _append(session)
            await flush(session)
        with pytest.raises(DBAPIError) as failed:
            async with pg.sessionmaker() as session, session.begin():
                await _append(session)
                await flush(session)
        assert failed.value.connection_invalidated
        async with pg.sessionmaker() as session, session.begin():
            third = await _append(session)
            await flush(session)
        assert await _lanes(pg) == {0: [first, second], 1: [third]}
    finally:
        await other.close()


async def test_a_lane_archived_to_its_last_row_is_continued_after_the_cut(db: AppContext) -> None:
    async with db.sessionmaker() as session:
        async with session.begin():
            await _append(session)
            await _append(session)
            await flush(session)
        async with db.engine.begin() as conn:
            assert await conn.run_sync(lambda sync: cut_everything(sync, now=START.replace(tzinfo=None))) == 2
        async with session.begin():
            after = await _append(session)
            await flush(session)
    async with db.engine.connect() as conn:
        report = await conn.run_sync(verify)
        rows = (await conn.execute(select(audit_event.c.lane, audit_event.c.position, audit_event.c.event_id))).all()
    assert report.clean, report.findings
    assert [tuple(r) for r in rows] == [(0, 3, after)]


@pytest.mark.pg
async def test_audited_reads_through_the_api_do_not_read_their_lane_again(pg: AppContext) -> None:
    """Sequential requests share one pooled connection: after its first audited request, a read's audit
    row continues the lane without reading it (the read's statements: its own, and the audit INSERT)."""
    reads = _head_reads(pg)
    statements: list[str] = []

    @event.listens_for(pg.engine.sync_engine, "before_cursor_execute")
    def _all(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=pg)), base_url=BASE_URL,
                                 headers={"Authorization": f"Bearer {admin_token(pg)}"}) as api:
        made = await api.put("/fhir/Patient/example-child", json=example("example-child"))
        assert made.status_code == 201, made.text
        assert len(reads) == 1
        counts = []
        for _ in range(3):
            statements.clear()
            assert (await api.get("/fhir/Patient/example-child")).status_code == 200
            counts.append(len(statements))
    assert len(reads) == 1 and counts[0] == counts[1] == counts[2]
    assert not [s for s in statements if "audit_event.lane" in s]
    assert sum(s.lstrip().startswith("SELECT") for s in statements) == counts[0] - 1  # and one INSERT
    assert list(await _lanes(pg)) == [0]

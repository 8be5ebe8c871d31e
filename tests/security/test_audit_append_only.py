"""The audit trail is append-only in the database itself (app/storage/audit_guards.py): a direct UPDATE
or DELETE of an audit row or of its reference rows is refused on PostgreSQL and SQLite, and so is
TRUNCATE on PostgreSQL; the one sanctioned removal, archiving the start of a lane
(app/security/audit_archive.py), still leaves a trail that verifies, also against a checkpoint taken
before it; tampering after it is still found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.context import AppContext
from app.security.audit_archive import cut_lane
from app.security.audit_verify import Report, verify
from app.storage.audit_guards import REFUSED
from app.storage.audit_tables import audit_event, audit_event_cut, audit_event_ref
from tests.security.test_audit_search import trail_db
from tests.security.test_audit_trail import _history, unguarded
from tests.support.postgres import PgCluster

NOW = datetime(2026, 12, 6, 23, 0)


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def fresh(request: pytest.FixtureRequest, pg_cluster: PgCluster | None
                ) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    async with trail_db(request.param, pg_cluster, "safeflag_audit_guard") as pair:
        yield pair
E, R = audit_event.c, audit_event_ref.c


async def _refused(ctx: AppContext, stmt: object) -> str:
    async with ctx.engine.connect() as conn:
        await conn.begin()
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(stmt)  # type: ignore[call-overload]
        await conn.rollback()
    return str(caught.value.orig)


async def test_direct_updates_and_deletes_of_audit_rows_are_refused(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    ctx, api = fresh
    await _history(api, ctx)
    for stmt, what in [
        (update(audit_event).where(E.position == 2).values(outcome="8"), "UPDATE on audit_event"),
        (update(audit_event).values(content={"resourceType": "AuditEvent"}), "UPDATE on audit_event"),
        (delete(audit_event).where(E.position == 2), "DELETE on audit_event"),
        (delete(audit_event), "DELETE on audit_event"),
        (update(audit_event_ref).values(ref="Patient/other"), "UPDATE on audit_event_ref"),
        (delete(audit_event_ref), "DELETE on audit_event_ref"),
    ]:
        assert f"{REFUSED}: {what} refused" in await _refused(ctx, stmt), what
    if ctx.engine.dialect.name == "postgresql":
        assert f"{REFUSED}: TRUNCATE refused" in await _refused(ctx, text("TRUNCATE audit_event CASCADE"))
    async with ctx.engine.connect() as conn:
        assert (await conn.run_sync(verify)).clean


async def _verify(conn: AsyncConnection, checkpoint: dict[int, tuple[int, str]] | None = None) -> Report:
    def run(sync: Connection) -> Report:
        return verify(sync, checkpoint)
    return await conn.run_sync(run)


async def test_archiving_a_lanes_start_is_the_one_removal_and_the_trail_still_verifies(
        fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    ctx, api = fresh
    await _history(api, ctx)
    async with ctx.engine.connect() as conn:
        before = await _verify(conn)
        lane, (last, _hash) = next(iter(sorted(before.heads.items())))
        kept = (await conn.execute(select(E.event_id).where(E.lane == lane, E.position > 3))).scalars().all()
        gone = (await conn.execute(select(E.event_id).where(E.lane == lane, E.position <= 3))).scalars().all()
    async with ctx.engine.begin() as conn:
        assert await conn.run_sync(lambda sync: cut_lane(sync, lane, 3, now=NOW)) == 3
        assert await conn.run_sync(lambda sync: cut_lane(sync, lane, 2, now=NOW)) == 0  # a cut only moves forward
    async with ctx.engine.connect() as conn:
        after = await _verify(conn)
        against = await _verify(conn, before.heads)  # a checkpoint taken before the cut
        left = (await conn.execute(select(E.event_id).where(E.lane == lane))).scalars().all()
        refs_left = set((await conn.execute(select(R.event_id))).scalars().all())
    assert after.clean and against.clean, (after.findings, against.findings)
    assert after.rows == before.rows - 3 and sorted(left) == sorted(kept)
    assert not refs_left & set(gone) and refs_left & set(kept)
    # the next row is still protected, the cut cannot move back nor go while its lane has rows
    assert "DELETE on audit_event refused" in await _refused(ctx, delete(audit_event).where(E.position == 4))
    assert "UPDATE on audit_event_cut refused" in await _refused(
        ctx, update(audit_event_cut).values(position=1))
    assert "DELETE on audit_event_cut refused" in await _refused(ctx, delete(audit_event_cut))
    # tampering after the cut (triggers dropped) is still found, at its position
    async with ctx.engine.connect() as conn:
        await conn.begin()
        await unguarded(conn)
        fourth = (await conn.execute(select(E.event_id).where(E.lane == lane, E.position == 4))).scalar_one()
        await conn.execute(delete(audit_event).where(E.lane == lane, E.position == 4))
        report = await _verify(conn)
        await conn.rollback()
    assert report.findings == [f"lane {lane}: position(s) 4 missing (rows removed)",
                               f"lane {lane} position 5: does not follow the row before it (a row was removed, "
                               "inserted or reordered)",
                               f"AuditEvent/{fourth}: type/subtype search rows of an event the trail does not hold "
                               "(its row was removed, or they were inserted)"]
    assert last > 5

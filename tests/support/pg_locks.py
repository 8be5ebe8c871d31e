"""Ordering concurrent transactions on PostgreSQL without sleeping: hold a row with `hold_row`, start
the writers one by one, each once the ones before it wait for a lock (`lock_waiters`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.context import AppContext

WAITING = text("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
               "WHERE NOT l.granted AND a.datname = current_database()")


async def hold_row(conn: AsyncConnection, resource_type: str, res_id: str) -> None:
    """Lock a resource's row in `conn`'s transaction, as a writer does (`Repository.get_for_write`)."""
    await conn.execute(text("SELECT pk FROM resource WHERE res_type = :t AND res_id = :id FOR UPDATE"),
                       {"t": resource_type, "id": res_id})


async def lock_waiters(ctx: AppContext, n: int) -> None:
    """Until `n` transactions wait for a lock (at most 30 s: then the test fails, it does not hang)."""
    for _ in range(600):
        async with ctx.engine.connect() as conn:
            if (await conn.scalar(WAITING) or 0) >= n:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} lock waiters expected")

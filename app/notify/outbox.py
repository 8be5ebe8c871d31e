"""The transactional outbox: claiming committed changes for matching.

Rows are appended by the Repository in the change's own transaction (so an uncommitted change is
never seen, a committed one never lost). Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL so any
number of `safeflag dispatcher` processes share the work without taking the same row; SQLite has a
single writer, so a plain select inside `BEGIN IMMEDIATE` is already exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.storage.notify_tables import outbox_event

CHANNEL = "safeflag_outbox"


@dataclass(frozen=True)
class OutboxRow:
    id: int
    res_type: str
    res_id: str
    version_id: int
    action: str
    occurred_at: datetime


async def claim_batch(session: AsyncSession, limit: int) -> list[OutboxRow]:
    o = outbox_event.c
    stmt: Any = select(o.id, o.res_type, o.res_id, o.version_id, o.action, o.occurred_at).where(
        o.processed_at.is_(None)
    ).order_by(o.id).limit(limit)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = (await session.execute(stmt)).all()
    return [OutboxRow(*r) for r in rows]


async def mark_processed(session: AsyncSession, ids: list[int], now: datetime) -> None:
    if ids:
        await session.execute(update(outbox_event).where(outbox_event.c.id.in_(ids)).values(processed_at=now))

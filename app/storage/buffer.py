"""Deferred rows: the version, search-index and outbox rows of a transaction, written together.

A create or update writes its `resource` row at once (its primary key is needed) and queues the rows
that only refer to it. The queue is written as one executemany per statement just before the next
statement that could read or change them (any statement other than another `resource` INSERT) and
just before COMMIT, so that every read in the transaction still sees every row it wrote, and the
transaction stays all-or-nothing. A create Flag (the Flag, then its AuditEvent) goes from twelve
INSERTs to eight; a transaction Bundle of N entries from about 6N to N + 6.

Savepoints: rows queued outside a savepoint must not be dropped when the savepoint rolls back, so
`savepoint()` flushes before it begins and before it is released; a savepoint opened any other way with
rows queued is refused (RuntimeError), never silently allowed to lose them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

PENDING = "safeflag.pending_rows"
# Statements with this execution option may run with rows still queued: they neither read nor change them.
KEEPS_QUEUE = "safeflag_keeps_queue"


def defer(session: AsyncSession, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Queue `rows` for `stmt` (an INSERT) in the session's transaction."""
    pending: dict[Any, list[dict[str, Any]]] = session.info.setdefault(PENDING, {})
    pending.setdefault(stmt, []).extend(rows)


def _flush(session: Session) -> None:
    pending = session.info.pop(PENDING, None)  # popped first: the INSERTs below must not flush again
    if pending:
        for stmt, rows in pending.items():
            session.execute(stmt, rows)


async def flush(session: AsyncSession) -> None:
    """Write the queued rows now."""
    if session.info.get(PENDING):
        await session.run_sync(_flush)


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """`begin_nested()` that keeps the queue out of the savepoint (see the module docstring)."""
    await flush(session)
    async with session.begin_nested():
        yield
        await flush(session)


class BufferedSession(Session):
    """The session class of every SafeFlag session (app/storage/db.py)."""


@event.listens_for(BufferedSession, "do_orm_execute")
def _before_statement(state: ORMExecuteState) -> None:
    if state.session.info.get(PENDING) and not state.execution_options.get(KEEPS_QUEUE):
        _flush(state.session)


@event.listens_for(BufferedSession, "before_commit")
def _before_commit(session: Session) -> None:
    _flush(session)


@event.listens_for(BufferedSession, "after_soft_rollback")
def _after_rollback(session: Session, _previous: SessionTransaction) -> None:
    session.info.pop(PENDING, None)  # the rows belonged to what was rolled back (savepoint() keeps it so)


@event.listens_for(BufferedSession, "after_transaction_create")
def _on_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested and session.info.get(PENDING):
        raise RuntimeError("rows are queued: open savepoints with app.storage.buffer.savepoint()")

"""Deferred rows: the version, search-index and outbox rows of a transaction, written together.

A create or update writes its `resource` row at once (its primary key is needed) and queues the rows
that only refer to it (`defer`). `flush(session)`, which `Repository.flush()` calls, writes the queue
as one executemany per table. Nothing flushes behind the caller's back: the unit of work flushes
before COMMIT, and every reader of a queued table flushes before its statement (the repository's
history, version reads and index deletes; the search executor and prepared searches, when the queue
holds rows of the tables they read: not the audit records of a page's earlier reads; the access
checks and rules that read index tables), so that every read in the transaction still sees every
row it wrote, and the transaction stays all-or-nothing. A statement that touches only `resource` or
`patient_nhs_number` (the next create's INSERT, an update's version bump) leaves the queue as it is.
A create Flag (the Flag, then its AuditEvent) goes from twelve INSERTs to eight; a transaction Bundle
of N entries from about 6N to N + 6. The test suite checks that no statement reads a queued table,
and no transaction commits, while rows are still queued (tests/conftest.py).

On PostgreSQL the queue goes out as ONE statement whatever it holds: each table's rows become one
`INSERT ... SELECT FROM unnest(...)` (a column's values as one array parameter), joined as
data-modifying CTEs, which PostgreSQL runs exactly once each, to completion, whether or not the main
statement reads them (https://www.postgresql.org/docs/15/queries-with.html#QUERIES-WITH-MODIFYING).
A create Flag's six queued INSERTs (its and its AuditEvent's version, index and outbox rows) become one
round trip, and the statement's text depends only on which tables have rows, so asyncpg prepares it
once per connection. Values pass through each column's own SQLAlchemy bind processor (JSON is
serialised exactly as before).

SQLite has no data-modifying CTEs: there each table's rows go out as one executemany, straight on the
sqlite3 connection when the transaction holds the write lock in place (app/storage/sqlite_driver.py),
the values through the same bind processors. SQLAlchemy's execution path (compiled-cache lookup,
parameter construction per row, result set-up) cost more than SQLite's own work for these INSERTs.

Savepoints: rows queued outside a savepoint must not be dropped when the savepoint rolls back, and
rows queued inside it must go with it, so `savepoint()` flushes before it begins and before it is
released, and drops what the savepoint queued when it rolls back. Open savepoints only through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Insert, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

PENDING = "safeflag.pending_rows"
# answers a transaction may keep for the rest of its reads while it writes nothing (search_scope's
# withheld-records probes): emptied at each write of a record (`Repository`'s versions)
READS_MEMO = "safeflag.reads_memo"


def defer(session: AsyncSession, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Queue `rows` for `stmt` (an INSERT) in the session's transaction."""
    pending: dict[Any, list[dict[str, Any]]] = session.info.setdefault(PENDING, {})
    pending.setdefault(stmt, []).extend(rows)


async def flush(session: AsyncSession, *, reading: Collection[str] | None = None) -> None:
    """Write the queued rows now (nothing to do when none are queued). `reading`: the names of the tables
    the caller is about to read; the queue then stays as it is unless it holds rows for one of them."""
    pending = session.info.get(PENDING)
    if not pending or (reading is not None and not any(
            not isinstance(stmt, Insert) or stmt.table.name in reading for stmt in pending)):
        return
    del session.info[PENDING]
    conn = await session.connection()
    plans = _plans(pending, conn.dialect)
    if plans is not None:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql(*_one_statement(plans, list(pending.values())))
            return
        raw = conn.sync_connection.connection.driver_connection if conn.sync_connection else None
        in_place = getattr(raw, "executemany_in_place", None)  # app/storage/sqlite_driver.py
        if in_place is not None and in_place(
            [(p.insert_sql, p.row_tuples(rows)) for p, rows in zip(plans, pending.values(), strict=True)]
        ):
            return
    for stmt, rows in pending.items():
        await session.execute(stmt, rows)


def _plans(pending: dict[Any, list[dict[str, Any]]], dialect: Dialect) -> list[_TablePlan] | None:
    """A plan per queued INSERT, or None when one is not a plain INSERT of a table's columns with the
    same keys in every row (then SQLAlchemy writes the queue, as it always could)."""
    out = []
    for stmt, rows in pending.items():
        keys = rows[0].keys()
        plan = _table_plan(stmt.table, tuple(keys), dialect) if isinstance(stmt, Insert) else None
        if plan is None or any(row.keys() != keys for row in rows):
            return None
        out.append(plan)
    return out


class _TablePlan:
    """One table's queued INSERT without SQLAlchemy's execution path: its columns and their bind
    processors, the part of the PostgreSQL statement (array casts) and SQLite's positional INSERT."""

    def __init__(self, table: Table, columns: tuple[str, ...], dialect: Dialect) -> None:
        self.table, self.columns = table, columns
        types = [table.c[name].type.dialect_impl(dialect) for name in columns]
        self.procs: list[Callable[[Any], Any] | None] = [t.bind_processor(dialect) for t in types]
        # JSON travels as text and is cast in the SELECT list (asyncpg's jsonb codec is for single values)
        self.json = [isinstance(t, JSON) for t in types]
        self.casts = ["TEXT" if j else t.compile(dialect=dialect) for t, j in zip(types, self.json, strict=True)]
        marks = ", ".join("?" for _ in columns)
        self.insert_sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"

    def sql(self, first: int) -> str:
        names = ", ".join(self.columns)
        arrays = ", ".join(f"${first + i}::{cast}[]" for i, cast in enumerate(self.casts))
        picks = ", ".join(f"u.c{i}::JSONB" if j else f"u.c{i}" for i, j in enumerate(self.json))
        aliases = ", ".join(f"c{i}" for i in range(len(self.columns)))
        return f"INSERT INTO {self.table.name} ({names}) SELECT {picks} FROM unnest({arrays}) AS u({aliases})"

    def row_tuples(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        names, procs = self.columns, self.procs
        return [tuple(v if proc is None else proc(v) for v, proc in zip(map(row.__getitem__, names), procs, strict=True))
                for row in rows]

    def arrays(self, rows: list[dict[str, Any]]) -> list[list[Any]]:
        """`row_tuples` column by column: PostgreSQL's array parameters."""
        return [list(column) for column in zip(*self.row_tuples(rows), strict=True)]


@lru_cache(maxsize=64)
def _table_plan(table: Table | None, columns: tuple[str, ...], dialect: Dialect) -> _TablePlan | None:
    if not isinstance(table, Table) or not columns or any(name not in table.c for name in columns):
        return None
    return _TablePlan(table, columns, dialect)


@lru_cache(maxsize=64)
def _statement_text(plans: tuple[_TablePlan, ...]) -> str:
    parts, first = [], 1
    for plan in plans:
        parts.append(plan.sql(first))
        first += len(plan.columns)
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(parts[:-1]))
    return f"WITH {ctes} {parts[-1]}" if ctes else parts[-1]


def _one_statement(plans: list[_TablePlan], rows: list[list[dict[str, Any]]]) -> tuple[str, tuple[Any, ...]]:
    args: list[Any] = []
    for plan, table_rows in zip(plans, rows, strict=True):
        args.extend(plan.arrays(table_rows))
    return _statement_text(tuple(plans)), tuple(args)


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """`begin_nested()` that keeps the queue out of the savepoint (see the module docstring)."""
    await flush(session)
    try:
        async with session.begin_nested():
            yield
            await flush(session)
    except BaseException:
        session.info.pop(PENDING, None)  # queued inside the savepoint, rolled back with it
        raise

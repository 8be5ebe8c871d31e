"""aiosqlite for SQLAlchemy's `sqlite+aiosqlite` dialect, with few trips to its thread.

aiosqlite runs every sqlite3 call on the connection's own thread and wakes the event loop for each.
SQLAlchemy's adapter makes four such calls per statement (create the cursor, execute, fetch all,
close); each trip cost 30-60 us of CPU between the two threads and the loop, many times SQLite's
own work for the short indexed statements of a FHIR write. A create Flag runs a dozen statements,
so the trips were about a third of its CPU.

`Connection` keeps aiosqlite (its thread, its queue, the SQLAlchemy adapter's use of its internals)
and only changes `cursor()`. The returned `Cursor` does a whole statement at once (sqlite3 cursor,
execute, fetch every row, close) and answers `description`, `rowcount`, `lastrowid` and the
fetches from that. Where it runs:

- Outside a transaction (BEGIN, the connect-time PRAGMAs) a statement goes to aiosqlite's thread,
  as do commit and rollback: these are where SQLite waits, for another process's write lock
  (`busy_timeout`, up to 30 s) or for a WAL checkpoint's fsync at commit, and the event loop
  must not wait with them.
- Inside a transaction that this connection began with BEGIN IMMEDIATE (or EXCLUSIVE) it runs on
  the caller's thread. Every SafeFlag transaction begins so (app/storage/db.py) and then holds
  the database's write lock; in WAL mode the statements after it do not wait for other
  connections
  (https://www.sqlite.org/wal.html#concurrency, https://www.sqlite.org/lang_transaction.html).
  What they cost is SQLite's CPU work, which held the GIL on the other thread anyway.

The pool has this one connection and SQLAlchemy awaits each call on it, so the two threads never
use it at the same time; that is what makes `check_same_thread=False` safe here.

Used through `create_async_engine(..., async_creator=...)`:
https://docs.sqlalchemy.org/en/20/orm/extensions/asyncio.html#using-the-async-creator-parameter
"""

from __future__ import annotations

import re
import sqlite3
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Self

import aiosqlite

_TAKES_WRITE_LOCK = re.compile(r"\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE)\b", re.IGNORECASE)
_Outcome = tuple[Any, int, int | None, list[Any] | None]


def _run(conn: sqlite3.Connection, many: bool, sql: str, parameters: Any) -> _Outcome:
    """One statement, start to end: what `Cursor` answers afterwards."""
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(sql, parameters)
        else:
            cur.execute(sql, parameters)
        rows = cur.fetchall() if cur.description else None
        return cur.description, cur.rowcount, cur.lastrowid, rows
    finally:
        cur.close()


class Cursor:
    """The part of `aiosqlite.Cursor` that SQLAlchemy's adapter uses (module docstring)."""

    arraysize = 1

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def _statement(self, many: bool, sql: str, parameters: Any) -> Cursor:
        owner, conn = self._conn, self._conn._conn
        if parameters is None:
            parameters = []
        if owner.write_locked and conn.in_transaction:  # never waits for a lock (module docstring)
            outcome = _run(conn, many, sql, parameters)
        else:
            owner.write_locked = False
            outcome = await owner._execute(_run, conn, many, sql, parameters)
            if _TAKES_WRITE_LOCK.match(sql):
                owner.write_locked = conn.in_transaction
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = deque(rows or ())
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Cursor:
        return await self._statement(False, sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Cursor:
        return await self._statement(True, sql, parameters)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        n = min(self.arraysize if size is None else size, len(self._rows))
        return [self._rows.popleft() for _ in range(n)]

    async def fetchall(self) -> Sequence[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def nextset(self) -> None:
        return None

    async def close(self) -> None:
        self._rows.clear()


class Connection(aiosqlite.Connection):
    write_locked = False  # a BEGIN IMMEDIATE/EXCLUSIVE of this connection holds the write lock

    def cursor(self) -> Cursor:  # type: ignore[override]  # aiosqlite's is awaitable; SQLAlchemy only enters it
        return Cursor(self)


def connector(path: str, *, timeout: float) -> Callable[[], Coroutine[Any, Any, Connection]]:
    """`async_creator` for create_async_engine: a `Connection` to the SQLite file at `path`."""

    async def connect() -> Connection:
        conn = Connection(lambda: sqlite3.connect(path, timeout=timeout, check_same_thread=False), iter_chunk_size=64)
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite: never hold the process open
        return await conn

    return connect

"""aiosqlite with one trip to its thread per statement (SQLAlchemy's `sqlite+aiosqlite` dialect).

aiosqlite runs each sqlite3 call on the connection's own thread and wakes the event loop for every
one of them. SQLAlchemy's adapter makes four such calls per statement (create the cursor, execute,
fetch all rows, close), and each trip costs some 30-40 us of CPU between the two threads and the
event loop, several times SQLite's own work for the short statements of a FHIR write. A write of
a Flag runs a dozen statements, so these trips were about a fifth of its CPU.

`Connection` keeps everything of aiosqlite (its thread, its queue, the SQLAlchemy adapter's use of
its internals) and only changes `cursor()`: the returned `Cursor` does the whole statement in one
trip (`sqlite3` cursor, execute, fetch every row, close) and answers `description`, `rowcount`,
`lastrowid` and the fetches from what that trip brought back. sqlite3 objects are still only
touched on aiosqlite's thread, so `check_same_thread` stays on.

Used through `create_async_engine(..., async_creator=...)`:
https://docs.sqlalchemy.org/en/20/orm/extensions/asyncio.html#using-the-async-creator-parameter
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Self

import aiosqlite

_Outcome = tuple[Any, int, int | None, list[Any] | None]


def _run(conn: sqlite3.Connection, many: bool, sql: str, parameters: Any) -> _Outcome:
    """One statement, on aiosqlite's thread: what the loop side of `Cursor` needs afterwards."""
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
    """The part of `aiosqlite.Cursor` that SQLAlchemy's adapter uses, one thread trip per statement."""

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
        self.description, self.rowcount, self.lastrowid, rows = await self._conn._execute(
            _run, self._conn._conn, many, sql, [] if parameters is None else parameters
        )
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
    def cursor(self) -> Cursor:  # type: ignore[override]  # aiosqlite's is awaitable; SQLAlchemy only enters it
        return Cursor(self)


def connector(path: str, *, timeout: float) -> Callable[[], Coroutine[Any, Any, Connection]]:
    """`async_creator` for create_async_engine: a `Connection` to the SQLite file at `path`."""

    async def connect() -> Connection:
        conn = Connection(lambda: sqlite3.connect(path, timeout=timeout), iter_chunk_size=64)
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite: never hold the process open
        return await conn

    return connect

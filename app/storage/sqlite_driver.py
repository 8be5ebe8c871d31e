"""aiosqlite for SQLAlchemy's `sqlite+aiosqlite` dialect, with few trips to its thread.

aiosqlite runs every sqlite3 call on the connection's own thread and wakes the event loop for each.
SQLAlchemy's adapter makes four such calls per statement (create the cursor, execute, fetch all,
close); each trip cost 30-60 us of CPU between the two threads and the loop, many times SQLite's
own work for the short indexed statements of a FHIR write. A create Flag runs a dozen statements,
so the trips were about a third of its CPU.

`Connection` keeps aiosqlite (its thread, its queue, the SQLAlchemy adapter's use of its internals)
and changes `cursor()`, `commit()` and `rollback()`; it keeps its own reference to the sqlite3
connection it opened (`sqlite`), and sends work to aiosqlite's thread only through aiosqlite's public
methods (`execute`, `executemany`, `commit`, `rollback`, `execute_fetchall`). The returned `Cursor` does a whole statement at once (sqlite3 cursor,
execute, fetch every row, close) and answers `description`, `rowcount`, `lastrowid` and the
fetches from that. Where it runs:

- BEGIN IMMEDIATE (every SafeFlag transaction begins so, app/storage/db.py) is first tried in
  place without waiting (`busy_timeout` 0 for that statement). Only when another connection, in
  practice another process, holds the write lock does it go to aiosqlite's thread and wait there
  (`busy_timeout`, 30 s), so that the event loop never waits for a lock.
- Inside that transaction every statement runs in place: this connection holds the write lock, and
  in WAL mode nothing after BEGIN IMMEDIATE waits for other connections
  (https://www.sqlite.org/wal.html#concurrency, https://www.sqlite.org/lang_transaction.html).
  Its cost is SQLite's CPU work, which held the GIL on the other thread anyway.
- COMMIT is durable by default: WAL with `synchronous=FULL` syncs the WAL to disk at every commit, so
  a commit that was answered survives a power loss or an OS crash, not only a crash of the process
  (https://www.sqlite.org/pragma.html#pragma_synchronous). That fsync runs on aiosqlite's thread,
  never on the event loop. `durable=False` (the setting `SAFEFLAG_SQLITE_MAY_LOSE_COMMITS_ON_POWER_LOSS`)
  gives `synchronous=NORMAL`: the commit appends to the WAL without fsync and runs in place; the WAL
  is synced only at checkpoints, so the last commits before a power loss or OS crash may be lost
  (never on a crash of the process: the OS still writes what it was handed). ROLLBACK runs in place.
- A transaction may also give up the fsync alone (`sync_next_transaction(False)` before its BEGIN;
  SQLite takes the level per connection, outside a transaction): the dispatcher's own bookkeeping
  (notification rows, leases, delivered marks; app/storage/db.py `BOOKKEEPING`), which it can redo
  from the durable outbox. Such a commit is lost on power loss only with the commits after it that
  were not synced either: the WAL is replayed as a prefix (each frame's checksum chains the ones
  before it), and the next durable commit's fsync covers every frame before it.
- Checkpoints (copying the WAL into the database file) do not decide durability: a commit is durable
  once its WAL frames are synced. This connection turns SQLite's automatic checkpoints off and runs a
  PASSIVE checkpoint on aiosqlite's thread every `CHECKPOINT_EVERY` of its commits instead
  (https://www.sqlite.org/wal.html#application_initiated_checkpoints); every process on the database
  (`serve`, `dispatcher`, the CLI) does so for its own commits, and the last connection to close
  checkpoints what is left. A checkpoint cannot pass a snapshot another process is still reading,
  so the WAL may grow while such a read lasts (as with SQLite's own automatic checkpoints);
  `journal_size_limit` truncates it back to 64 MiB once a checkpoint has caught up. After a crash
  the next connection recovers the committed transactions from the WAL.
- Everything else (statements outside such a transaction, connecting, closing) goes to the thread.

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

# What running transactions in place relies on (module docstring): WAL, and checkpoints only where
# Connection.commit runs them; SafeFlag's schema relies on foreign keys. `synchronous` comes from `durable`.
_PRAGMAS = ("journal_mode = WAL", "wal_autocheckpoint = 0", "journal_size_limit = 67108864", "foreign_keys = ON")
CHECKPOINT_EVERY = 64  # commits; a create writes some 15 pages, so about SQLite's default of 1000 pages
_TAKES_WRITE_LOCK = re.compile(r"\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE)\b", re.IGNORECASE)
_Outcome = tuple[Any, int, int | None, list[Any] | None]


def _begin_now(conn: sqlite3.Connection, sql: str, busy_ms: int) -> _Outcome | None:
    """BEGIN IMMEDIATE without waiting for the write lock: None when another connection holds it."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        return _run(conn, False, sql, [])
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY":
            return None
        raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")


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
        self._owner = conn
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: deque[Any] = deque()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def _statement(self, many: bool, sql: str, parameters: Any) -> Cursor:
        owner, conn = self._owner, self._owner.sqlite
        if parameters is None:
            parameters = []
        outcome: _Outcome | None
        if owner.write_locked and conn.in_transaction:  # never waits for a lock (module docstring)
            outcome = _run(conn, many, sql, parameters)
        else:
            owner.write_locked = False
            takes_lock = not many and not conn.in_transaction and _TAKES_WRITE_LOCK.match(sql) is not None
            outcome = _begin_now(conn, sql, owner.busy_ms) if takes_lock else None
            if outcome is None:
                outcome = await owner.on_thread(many, sql, parameters)
            owner.write_locked = takes_lock and conn.in_transaction
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
    sqlite: sqlite3.Connection  # the connection aiosqlite opened through `connector`'s function
    write_locked = False  # a BEGIN IMMEDIATE/EXCLUSIVE of this connection holds the write lock
    busy_ms = 30_000  # how long a statement on aiosqlite's thread waits for another connection's lock
    commits = 0  # commits in place since the last checkpoint
    durable = True  # synchronous=FULL: every commit synced to disk, on aiosqlite's thread (module docstring)
    syncing = True  # the level the sqlite3 connection is at now (FULL when durable, unless relaxed)

    def sync_next_transaction(self, sync: bool) -> None:
        """Whether the next transaction's commit is synced to disk (only where `durable`); call before
        its BEGIN. A pragma without I/O, run in place."""
        sync = sync and self.durable
        if sync != self.syncing:
            self.sqlite.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
            self.syncing = sync

    async def on_thread(self, many: bool, sql: str, parameters: Any) -> _Outcome:
        """One statement on aiosqlite's thread: one trip, and one more to fetch rows if it has any."""
        cursor = await (super().executemany(sql, parameters) if many else super().execute(sql, parameters))
        rows = list(await cursor.fetchall()) if cursor.description else None  # the statement is done
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows

    async def commit(self) -> None:
        conn = self.sqlite
        if not (self.write_locked and conn.in_transaction):
            await super().commit()
            return
        if self.syncing:
            await super().commit()  # on aiosqlite's thread; synchronous=FULL syncs the WAL before it returns
        else:
            conn.commit()  # appends to the WAL, no fsync, no checkpoint (module docstring)
        self.write_locked = False
        self.commits += 1
        if self.commits >= CHECKPOINT_EVERY:
            self.commits = 0
            await self.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")  # on aiosqlite's thread

    async def rollback(self) -> None:
        if self.write_locked and self.sqlite.in_transaction:
            self.sqlite.rollback()  # in WAL mode: drops this transaction's frames, no I/O, no lock wait
            self.write_locked = False
            return
        await super().rollback()

    def executemany_in_place(self, batches: list[tuple[str, list[tuple[Any, ...]]]]) -> bool:
        """Run each (INSERT, rows) here and now if this connection's transaction holds the write lock
        (module docstring); False, having run nothing, if it does not. For app/storage/buffer.py, whose
        queued rows are written from SQLAlchemy's synchronous flush where nothing can be awaited."""
        conn = self.sqlite
        if not (self.write_locked and conn.in_transaction):
            return False
        for sql, rows in batches:
            conn.executemany(sql, rows)
        return True

    def cursor(self) -> Cursor:  # type: ignore[override]  # aiosqlite's is awaitable; SQLAlchemy only enters it
        return Cursor(self)


def connector(path: str, *, timeout: float, durable: bool = True) -> Callable[[], Coroutine[Any, Any, Connection]]:
    """`async_creator` for create_async_engine: a `Connection` to the SQLite file at `path`; `durable`
    False trades durability on power loss or OS crash for commits without fsync (module docstring)."""

    async def connect() -> Connection:
        def open_file() -> sqlite3.Connection:
            # isolation_level None: no implicit BEGIN, the engine issues BEGIN IMMEDIATE itself (db.py);
            # `timeout` is the busy timeout of every wait on aiosqlite's thread (`Connection.busy_ms`).
            db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            for pragma in (*_PRAGMAS, f"synchronous = {'FULL' if durable else 'NORMAL'}"):
                db.execute(f"PRAGMA {pragma}")
            conn.sqlite = db
            return db

        # aiosqlite's own connect() calls its constructor so (pinned in pyproject.toml)
        conn = Connection(open_file, iter_chunk_size=64)
        conn.busy_ms = int(timeout * 1000)
        conn.durable = conn.syncing = durable
        # No public API for this: SQLAlchemy's aiosqlite dialect does the same, so that a connection
        # left open never holds the process open (pinned in pyproject.toml).
        conn._thread.daemon = True
        await conn  # starts aiosqlite's thread and opens the file there
        return conn

    return connect

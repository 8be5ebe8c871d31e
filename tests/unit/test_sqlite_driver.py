"""app/storage/sqlite_driver.py and the SQLite engine of app/storage/db.py: a BEGIN IMMEDIATE
transaction runs in place, start to commit, and leaves checkpoints to aiosqlite's thread (reached only
through aiosqlite's public methods); waiting
for another process's write lock and statements outside such a transaction go to the thread, and
the event loop runs on meanwhile; every DBAPI answer SQLAlchemy reads is still right (rows,
rowcount, lastrowid, RETURNING, errors); the pool's check-in rolls back only what is open."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage import sqlite_driver
from app.storage.db import create_engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with eng.begin() as conn:
        await conn.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL UNIQUE)"))
    yield eng
    await eng.dispose()


class Trips:
    """Counts the calls that go to aiosqlite's thread, by name: the driver reaches the thread only
    through these public aiosqlite methods."""

    SENT = ("execute", "executemany", "execute_fetchall", "commit", "rollback")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        for owner, name in [*((aiosqlite.Connection, n) for n in self.SENT), (aiosqlite.Cursor, "fetchall")]:
            monkeypatch.setattr(owner, name, self._counted(name, getattr(owner, name)))

    def _counted(self, name: str, original: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.names.append(name)
            return original(*args, **kwargs)

        return counted


async def test_the_engine_connects_through_the_one_trip_driver(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert type(raw.driver_connection) is sqlite_driver.Connection
        journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
    assert journal == "wal"


async def test_a_read_runs_in_place_and_returns_every_row(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (b) VALUES (:b)"), [{"b": f"v{i}"} for i in range(5)])
    trips = Trips(monkeypatch)
    async with engine.connect() as conn:
        trips.names.clear()
        rows = (await conn.execute(text("SELECT a, b FROM t ORDER BY a"))).all()
        assert trips.names == []  # BEGIN IMMEDIATE (app/storage/db.py) and the SELECT, in place
    assert trips.names == []  # and the rollback at check-in
    assert [tuple(r) for r in rows] == [(1, "v0"), (2, "v1"), (3, "v2"), (4, "v3"), (5, "v4")]


async def test_a_write_transaction_runs_in_place_and_its_durable_commit_on_the_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = Trips(monkeypatch)
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 2  # FULL: fsync at commit
        await conn.rollback()
        trips.names.clear()
        async with conn.begin():
            await conn.execute(text("INSERT INTO t (b) VALUES ('x')"))
            await conn.execute(text("INSERT INTO t (b) VALUES (:b)"), [{"b": "y"}, {"b": "z"}])
    # BEGIN IMMEDIATE, the INSERT, the executemany in place; the COMMIT (and its fsync) on the thread,
    # so the event loop never waits for the disk; nothing at check-in
    assert trips.names == ["commit"]
    other = sqlite3.connect(engine.url.database)  # committed for everyone
    assert other.execute("SELECT b FROM t ORDER BY a").fetchall() == [("x",), ("y",), ("z",)]
    other.close()


async def test_commits_that_may_be_lost_on_power_loss_run_in_place_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SAFEFLAG_SQLITE_MAY_LOSE_COMMITS_ON_POWER_LOSS=true`: synchronous=NORMAL, the COMMIT in place."""
    from app.config import Settings

    settings = Settings(data_dir=tmp_path, sqlite_may_lose_commits_on_power_loss="true", _env_file=None)  # type: ignore[call-arg]
    assert settings.sqlite_durable is False
    assert Settings(data_dir=tmp_path, _env_file=None).sqlite_durable is True  # type: ignore[call-arg]
    eng = create_engine(settings.effective_database_url, sqlite_durable=settings.sqlite_durable)
    try:
        async with eng.begin() as conn:
            await conn.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL UNIQUE)"))
        trips = Trips(monkeypatch)
        async with eng.connect() as conn:
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 1  # NORMAL
            await conn.rollback()
            trips.names.clear()
            async with conn.begin():
                await conn.execute(text("INSERT INTO t (b) VALUES ('x')"))
        assert trips.names == []
    finally:
        await eng.dispose()


async def test_checkpoints_come_every_so_many_commits_on_the_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY", 3)
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one() == 0
        await conn.commit()
        (await conn.get_raw_connection()).driver_connection.commits = 0
    trips = Trips(monkeypatch)
    for i in range(7):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (b) VALUES (:b)"), {"b": f"c{i}"})
    assert [n for n in trips.names if n != "commit"] == ["execute_fetchall", "execute_fetchall"]  # the checkpoints
    assert trips.names.count("commit") == 7


async def test_statements_of_a_deferred_transaction_go_to_the_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only BEGIN IMMEDIATE/EXCLUSIVE holds the write lock; after a plain BEGIN a write may still
    wait for it, so nothing runs in place."""
    trips = Trips(monkeypatch)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        cursor = raw.driver_connection.cursor()
        trips.names.clear()
        await cursor.execute("BEGIN")
        await cursor.execute("INSERT INTO t (b) VALUES ('deferred')")
        await cursor.execute("SELECT count(*) FROM t")
        assert await cursor.fetchall() == [(1,)]
        await cursor.execute("COMMIT")
        assert trips.names == ["execute", "execute", "execute", "fetchall", "execute"]


async def test_the_loop_runs_on_while_another_process_holds_the_write_lock(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """BEGIN IMMEDIATE waits for the lock (busy_timeout) on aiosqlite's thread, not on the loop."""
    other = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (b) VALUES ('other process')")
    ticks = 0

    async def write() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (b) VALUES ('ours')"))

    task = asyncio.create_task(write())
    for _ in range(20):
        await asyncio.sleep(0.01)
        ticks += 1
    assert not task.done()  # still waiting for the other process's lock, and the loop ticked meanwhile
    assert ticks == 20
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(task, timeout=10)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT b FROM t ORDER BY a"))).scalars().all() == ["other process", "ours"]


async def test_rowcount_lastrowid_and_returning(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        result = await conn.execute(text("INSERT INTO t (b) VALUES ('first')"))
        assert result.lastrowid == 1
        many = await conn.execute(text("INSERT INTO t (b) VALUES (:b)"), [{"b": "m1"}, {"b": "m2"}])
        assert many.rowcount == 2
        returned = (await conn.execute(text("INSERT INTO t (b) VALUES ('r') RETURNING a, b"))).one()
        assert tuple(returned) == (4, "r")
        updated = await conn.execute(text("UPDATE t SET b = b || '!' WHERE a > 1"))
        assert updated.rowcount == 3


async def test_an_error_reaches_sqlalchemy_as_its_dbapi_exception(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (b) VALUES ('dup')"))
    with pytest.raises(IntegrityError, match="UNIQUE constraint failed: t.b"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (b) VALUES ('other')"))
            await conn.execute(text("INSERT INTO t (b) VALUES ('dup')"))
    async with engine.connect() as conn:  # the failed transaction left nothing behind
        assert (await conn.execute(text("SELECT b FROM t ORDER BY a"))).scalars().all() == ["dup"]


async def test_streamed_results_come_in_the_asked_batches(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (b) VALUES (:b)"), [{"b": f"s{i}"} for i in range(7)])
    async with engine.connect() as conn:
        result = await conn.stream(text("SELECT b FROM t ORDER BY a"))
        batches = [[r[0] for r in part] async for part in result.partitions(3)]
    assert batches == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6"]]


async def test_check_in_rolls_back_only_an_open_transaction(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    rollbacks: list[bool] = []
    original = sqlite_driver.Connection.rollback

    async def counted(conn: Any) -> None:
        rollbacks.append(conn.in_transaction)
        await original(conn)

    monkeypatch.setattr(sqlite_driver.Connection, "rollback", counted)
    async with engine.connect() as conn:  # a transaction the connection's user never ended
        await conn.execute(text("INSERT INTO t (b) VALUES ('left open')"))
    assert rollbacks == [True]
    async with engine.begin() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0  # it was rolled back
        driver = (await conn.get_raw_connection()).driver_connection
    assert driver.in_transaction is False
    async with engine.connect():  # nothing begun, nothing open: nothing to roll back at check-in
        pass
    assert rollbacks == [True]


async def test_bookkeeping_transactions_commit_without_fsync_and_the_next_one_syncs_again(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher's bookkeeping (app/storage/db.py BOOKKEEPING) commits in place at
    synchronous=NORMAL; the transaction after it is back at FULL, its fsync covering both."""
    from app.storage.db import BOOKKEEPING

    bookkeeping = engine.execution_options(**BOOKKEEPING)
    trips = Trips(monkeypatch)
    async with bookkeeping.begin() as conn:
        await conn.execute(text("INSERT INTO t (b) VALUES ('matched')"))
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 1
    assert trips.names == []  # no fsync, nothing on the thread
    async with engine.begin() as conn:
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 2
        await conn.execute(text("INSERT INTO t (b) VALUES ('answered')"))
    assert trips.names == ["commit"]
    other = sqlite3.connect(engine.url.database)
    assert other.execute("SELECT b FROM t ORDER BY a").fetchall() == [("matched",), ("answered",)]
    other.close()

"""Async engine and sessions for SQLite (embedded default) and PostgreSQL.

SQLite runs through ONE writer connection (a pool of writers gave the same throughput with a far
worse p99), opened by app/storage/sqlite_driver.py (WAL, `synchronous=FULL` so that every answered
commit is on disk, unless `sqlite_durable=False`; a 30 s busy timeout), and every transaction starts with `BEGIN IMMEDIATE` so that a second process
(a `safeflag dispatcher`) waits for the lock instead of failing on upgrade.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.storage import sqlite_driver


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, pool_size: int = 16, echo: bool = False,
                  statement_timeout: float = 0, sqlite_durable: bool = True) -> AsyncEngine:
    """`statement_timeout` (seconds, PostgreSQL; 0: none) stops any one statement that runs longer, so a
    costly query cannot hold a pooled connection and a backend for minutes (app/storage/failures.py
    answers it 503). Migrations build their own engine without it."""
    parsed = make_url(url)
    common: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
        "echo": echo,
        "hide_parameters": True,  # error messages (and so logs) never carry the values: NHS numbers
    }
    if parsed.get_backend_name() == "sqlite":
        db_path = parsed.database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=60,
            async_creator=sqlite_driver.connector(db_path or ":memory:", timeout=30, durable=sqlite_durable),
            pool_reset_on_return=None, **common,  # see _configure_sqlite's "reset"
        )
        _configure_sqlite(engine)
        return engine
    # The pool holds as many connections as a worker serves requests at once (overflow connections are
    # opened and closed per request, and a new asyncpg connection costs more than the request). Rows
    # queued by app/storage/buffer.py go out as one multi-row INSERT each: asyncpg's executemany costs a
    # round of binds per row. How statements are planned: see `plan_with_values`.
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size // 2, pool_pre_ping=False,
        connect_args={"server_settings": {"plan_cache_mode": "auto",
                                          "statement_timeout": str(int(statement_timeout * 1000))}}, **common
    )
    engine.sync_engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


# Execution option of the dispatcher's bookkeeping transactions (notification rows, leases, delivered
# marks): their commits need no fsync of their own on SQLite, as the dispatcher redoes whatever a
# power loss takes from them out of the durable outbox (at-least-once, same event numbers);
# app/storage/sqlite_driver.py. A no-op on PostgreSQL.
BOOKKEEPING = {"safeflag_bookkeeping": True}


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        bookkeeping = conn.get_execution_options().get("safeflag_bookkeeping", False)
        conn.connection.driver_connection.sync_next_transaction(not bookkeeping)
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_conn: Any, _record: Any, state: Any) -> None:
        # The pool's default reset (a ROLLBACK on every check-in) costs a trip to aiosqlite's thread on
        # every request, although the unit of work has already committed or rolled back. Roll back only
        # what is really open: sqlite3 itself knows (`in_transaction`, readable from any thread).
        # https://docs.sqlalchemy.org/en/20/core/pooling.html#custom-reset-on-return-schemes
        if state.terminate_only or not state.asyncio_safe:
            return
        if dbapi_conn.driver_connection.in_transaction:
            dbapi_conn.rollback()


# A search's plan depends on its values; see `plan_with_values`.
_CUSTOM_PLANS_IN = "safeflag.custom_plans_in"  # session.info: a weak reference to the transaction that sent it
_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")


async def plan_with_values(session: AsyncSession) -> None:
    """Have PostgreSQL plan the rest of this transaction's statements with their actual values.

    asyncpg prepares every statement, and PostgreSQL's default (`plan_cache_mode=auto`, which each
    connection sets) may switch a prepared statement to a generic plan, made once without the values,
    after five executions. That is right for statements whose best plan cannot depend on the values
    (a read by id or key, the queued INSERTs) and saves planning them on
    every request. It is wrong for any search: a generic plan cannot tell a rare value from a common
    one (an NHS number from a flag category) and once scanned whole index tables (a 1 ms search took
    15-50 ms; with generic plans for the flag rules' duplicate check a create cost four times the
    PostgreSQL CPU). So every search, the API's, the rules' prepared ones and the audit trail's
    (app/search/executor.py, app/search/prepared.py, app/security/audit_search.py) and the withheld
    records' probes (app/security/search_scope.py, audit_search.py), calls this first:
    one `SET LOCAL`, which holds for the rest of the transaction and ends with it. A statement that
    matches on a value's frequency belongs behind it. A no-op on SQLite, which plans every statement
    anyway. Sent once per transaction (or savepoint, whose rollback would undo it): a write whose rules
    run several lookups pays for one; again after `plan_generically`."""
    if session.get_bind().dialect.name != "postgresql":
        return
    scope = session.get_nested_transaction() or session.get_transaction()
    sent_in = session.info.get(_CUSTOM_PLANS_IN)
    if scope is not None and sent_in is not None and sent_in() is scope:
        return
    await session.execute(_CUSTOM_PLANS)
    # a weak reference: the session must not keep its finished transaction (and what it holds) alive
    session.info[_CUSTOM_PLANS_IN] = weakref.ref(scope or session.get_transaction())


_GENERIC_PLANS = text("SET LOCAL plan_cache_mode = auto")


async def plan_generically(session: AsyncSession) -> None:
    """Undo `plan_with_values` for this transaction's next statements, until it is called again, so that
    PostgreSQL may use the generic plans it keeps (`auto`): for a run of statements whose plan cannot
    depend on their values, an `_include`'s look-ups (the types its references name, then the resources
    by type and id, both driven by a few of the page's pks, app/search/executor.py `GENERIC_PKS`).
    Planned with their values they cost 0.25-0.45 ms of planning each at every page view, to make the
    same index scans as their generic plans. Sends nothing when custom plans are not in force (SQLite,
    or no search yet in this transaction or savepoint)."""
    sent_in = session.info.get(_CUSTOM_PLANS_IN)
    scope = session.get_nested_transaction() or session.get_transaction()
    if sent_in is None or scope is None or sent_in() is not scope:
        return
    await session.execute(_GENERIC_PLANS)
    del session.info[_CUSTOM_PLANS_IN]


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

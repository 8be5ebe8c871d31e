"""A throwaway database of its own (a SQLite file, or a database on the suite's PostgreSQL cluster) with
an AppContext over it, for tests that migrate step by step (data migrations of stored resources)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.config import Settings
from app.context import AppContext
from app.resource_rules import resource_rules
from tests.conftest import BASE_URL, _pg_url
from tests.support.postgres import PgCluster


@asynccontextmanager
async def fresh_context(db: str, pg_cluster: PgCluster | None, pg_name: str) -> AsyncIterator[AppContext]:
    """An unmigrated database (`db` "sqlite" or "pg"; `pg_name` the PostgreSQL database's name)."""
    tmp = Path(tempfile.mkdtemp(prefix="safeflag-migrate-"))
    url = f"sqlite+aiosqlite:///{tmp / 'm.db'}" if db == "sqlite" else _pg_url(pg_cluster, pg_name)
    settings = Settings(data_dir=tmp, database_url=url, base_url=BASE_URL, dispatcher_in_process=False,
                        rate_limit_per_second=0, _env_file=None)  # type: ignore[call-arg]
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    try:
        yield ctx
    finally:
        await ctx.close()

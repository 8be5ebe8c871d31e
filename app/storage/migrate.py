"""Alembic migrations run from the application (`safeflag migrate`, `safeflag serve`, tests).

The configuration is built here, not read from alembic.ini (which serves developers running `alembic
revision` in the checkout), so an installed `safeflag` needs only its package (app/data_files.py)."""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.data_files import data_dir


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(data_dir("migrations")))
    cfg.set_main_option("path_separator", "os")  # as alembic.ini says: no legacy splitting of paths
    return cfg


@cache
def head_revision() -> str | None:
    """This build's head (read from the migration files once: `/readyz` asks on every probe)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(conn: AsyncConnection) -> str | None:
    def _get(sync_conn: Connection) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    return await conn.run_sync(_get)


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    cfg = alembic_config()

    def _do(sync_conn: Connection) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_do)

"""Transaction-scoped locks on PostgreSQL, for writers that read, decide, then write the same thing:
released at commit or rollback. SQLite needs none: its one writer connection runs write transactions
one at a time (BEGIN IMMEDIATE, app/storage/db.py).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")


def on_postgresql(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


async def advisory_lock(session: AsyncSession, key: str) -> None:
    """Serialise transactions that check-then-write the same `key` (PostgreSQL; released at commit)."""
    if on_postgresql(session):
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        await session.execute(_ADVISORY_LOCK, {"k": int.from_bytes(digest, "big", signed=True)})

"""Composition root: the engine, session factory, clock and id source an app (or CLI command) runs on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.fhir.search.definitions import make_indexer
from app.fhir.service import FhirService
from app.storage.db import create_engine, create_sessionmaker
from app.storage.repository import Clock, IdSource, Indexer, Repository


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class UuidIds:
    def new_id(self) -> str:
        return str(uuid.uuid4())


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock = field(default_factory=SystemClock)
    ids: IdSource = field(default_factory=UuidIds)
    indexer: Indexer | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set after a commit that wrote outbox rows

    def __post_init__(self) -> None:
        from app import rules

        rules.load()  # resource-type write rules (safeguarding, notifications)
        if self.indexer is None:
            self.indexer = make_indexer(self.settings.fhir_base)

    @classmethod
    def from_settings(cls, settings: Settings, **kw: object) -> AppContext:
        engine = create_engine(settings.effective_database_url, pool_size=settings.db_pool_size)
        return cls(settings, engine, create_sessionmaker(engine), **kw)  # type: ignore[arg-type]

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[FhirService]:
        """One transaction: committed when the block ends normally, rolled back on any exception."""
        async with self.sessionmaker() as session:
            async with session.begin():
                assert self.indexer is not None
                repo = Repository(session, clock=self.clock, ids=self.ids, indexer=self.indexer)
                yield FhirService(repo, self.settings)
            if session.info.pop("outbox", False):
                self.wake.set()

    async def close(self) -> None:
        await self.engine.dispose()

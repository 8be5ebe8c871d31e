"""Composition root: the database engine, session factory, clock, id source, access policy and
interceptor chain (the resource-type rules, `app/resource_rules.py`) an app, the dispatcher or a CLI
command runs on; `unit_of_work()` makes one transaction from them (app/interactions/unit_of_work.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.clock import SystemClock, clock_for
from app.config import Settings
from app.fhir.profiles import use_profiles
from app.fhir.search.definitions import make_indexer
from app.interactions.interceptors import Interceptors
from app.interactions.service import FhirService
from app.interactions.unit_of_work import unit_of_work
from app.resource_rules import resource_rules
from app.security.guard import Policy
from app.security.policy import decide
from app.security.principal import Principal
from app.storage.db import BOOKKEEPING, create_engine, create_sessionmaker
from app.storage.repository import Clock, IdSource, Indexer


class UuidIds:
    def new_id(self) -> str:
        return str(uuid.uuid4())


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    # the resource-type rules every write and read of this app runs (app/resource_rules.py)
    interceptors: Interceptors
    clock: Clock = field(default_factory=SystemClock)
    ids: IdSource = field(default_factory=UuidIds)
    indexer: Indexer | None = None
    # the access policy every interaction of this app asks once (`policy.decide`; a test may count its calls)
    policy: Policy = decide
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set after a commit that wrote outbox rows
    # sessions for the dispatcher's own bookkeeping: on SQLite their commits need no fsync (db.BOOKKEEPING)
    bookkeeping: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        if self.settings.profiles_dir is not None:
            use_profiles(self.settings.profiles_dir)
        if self.indexer is None:
            self.indexer = make_indexer(self.settings.fhir_base)
        self.bookkeeping = create_sessionmaker(self.engine.execution_options(**BOOKKEEPING))

    @classmethod
    def from_settings(cls, settings: Settings, interceptors: Interceptors, **kw: object) -> AppContext:
        engine = create_engine(settings.effective_database_url, pool_size=settings.db_pool_size,
                               statement_timeout=settings.statement_timeout_seconds,
                               sqlite_durable=settings.sqlite_durable)
        kw.setdefault("clock", clock_for(settings))  # the system's, or a test run's (app/clock.py)
        return cls(settings, engine, create_sessionmaker(engine), interceptors, **kw)  # type: ignore[arg-type]

    def unit_of_work(
        self, principal: Principal | None = None, *, request_id: str | None = None,
        client_address: str | None = None, scheduled: bool = False, metrics: object = None,
    ) -> AbstractAsyncContextManager[FhirService]:
        """One transaction with a `FhirService` that runs every interaction in it, decided and audited
        for `principal` (app/interactions/unit_of_work.py), made from this context's parts."""
        return unit_of_work(self, principal, request_id=request_id, client_address=client_address,
                            scheduled=scheduled, metrics=metrics)

    async def close(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AppContext]:
    """The context for `settings`, closed when the block ends (a CLI command's that writes): it runs the
    same resource-type rules as the app."""
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    try:
        yield ctx
    finally:
        await ctx.close()

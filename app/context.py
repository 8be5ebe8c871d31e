"""Composition root: the database engine, session factory, clock, id source and interceptor chain (the
resource-type rules, `app/resource_rules.py`) an app, the dispatcher or a CLI command runs on, and
`unit_of_work()`: one transaction, with a `FhirService` that runs every interaction in it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.clock import SystemClock, clock_for
from app.config import Settings
from app.errors import FhirError
from app.fhir.profiles import use_profiles
from app.fhir.search.definitions import make_indexer
from app.interactions.interceptors import Interceptors
from app.interactions.server_writes import check_server_write
from app.interactions.service import FhirService
from app.resource_rules import resource_rules
from app.security import audit_trail
from app.security.affiliation import enrich
from app.security.guard import Guard, Policy
from app.security.policy import decide
from app.security.principal import Principal
from app.storage.db import BOOKKEEPING, create_engine, create_sessionmaker
from app.storage.failures import as_fhir_error
from app.storage.repository import Clock, IdSource, Indexer, Repository
from app.vocabulary import UserRole

log = logging.getLogger("safeflag")


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

    def _repo(self, session: AsyncSession) -> Repository:
        assert self.indexer is not None
        return Repository(session, clock=self.clock, ids=self.ids, indexer=self.indexer, check=check_server_write)

    @asynccontextmanager
    async def unit_of_work(
        self, principal: Principal | None = None, *, request_id: str | None = None,
        client_address: str | None = None, scheduled: bool = False, metrics: object = None,
    ) -> AsyncIterator[FhirService]:
        """One transaction: committed when the block ends normally, rolled back on any exception; after
        the commit, the writes' committed work (`FhirService.notes`) runs with `metrics` (the app's).

        With a `principal`, every access is decided by the policy and audited in the same transaction;
        a refused or failed access is audited afterwards in a transaction of its own."""
        svc: FhirService | None = None
        try:
            async with self.sessionmaker() as session:
                async with session.begin():
                    repo = self._repo(session)
                    if principal is not None:
                        # MASH practitioners read the copies shared with them: resolve those up front
                        shared = "DocumentReference" if principal.role == UserRole.MASH_PRACTITIONER else None
                        principal = await enrich(session, principal, shared)
                    guard = Guard(principal, repo, server=self.settings.fhir_base, now=self.clock.now,
                                  request_id=request_id, client_address=client_address, policy=self.policy)
                    svc = FhirService(repo, self.settings, self.interceptors, principal=principal, guard=guard,
                                      scheduled=scheduled)
                    yield svc
                    await repo.flush()  # the queued version, index and outbox rows, before COMMIT
                if session.info.pop("outbox", False):
                    self.wake.set()
            if svc is not None:
                svc.notes.run_committed(metrics)
        except Exception as exc:
            failure = as_fhir_error(exc)  # the database failed, not the request: 503 (app/storage/failures.py)
            if svc is not None:
                try:
                    await self._audit_attempt(svc, failure or exc)
                except Exception as audit_exc:
                    if failure is None or as_fhir_error(audit_exc) is None:
                        raise
                    log.warning("refused attempt not audited: the database is unavailable")
            if failure is not None:
                raise failure from exc
            raise

    async def _audit_attempt(self, svc: FhirService, exc: Exception) -> None:
        status = exc.status if isinstance(exc, FhirError) else 500
        desc = exc.issues[0].diagnostics if isinstance(exc, FhirError) and exc.issues else "server error"
        attempt = svc.guard.attempt_event(status, desc)
        if attempt is None:
            return
        event, org = attempt
        async with self.sessionmaker() as session, session.begin():
            repo = self._repo(session)
            await audit_trail.record(repo, event, org=org, now=svc.guard.now(), base=self.settings.fhir_base)
            await repo.flush()

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

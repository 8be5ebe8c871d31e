"""Ports: the two narrow interfaces the layers under the interaction engine are handed, so that they never
import the engine (`app/interactions/`) or the composition root (`app/context.py`) above them.

- `WriteContext`: what a resource-type rule (a write or read interceptor in `app/safeguarding/`,
  `app/notify/`) is given about the interaction under way: its database session and repository, the
  clock, the FHIR base URL, who is asking, the settings, the access guard and where to put notes.
- `UnitOfWork`: what a job or timer (escalation, the caseload import, the dispatcher's deliveries) is
  given: a source of transactions (`unit_of_work()`, each yielding a `Work`: a `WriteContext` that can
  also create and update through the engine's full write path), the settings, the clock, and the
  dispatcher's bookkeeping sessions and wake-up signal.

The engine's service and `AppContext` satisfy these structurally (nothing subclasses them); mypy checks
that where the composition (`app/main.py`, the dispatcher entry point, the CLI) hands them down.
This module is a leaf: at run time it imports only the standard library; the types it names are imported
for the type checker only, and only from the layers below (security, storage, config, errors).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from app.config import Settings
    from app.errors import Issue
    from app.security.guard import Guard
    from app.security.principal import Principal
    from app.storage.repository import Repository
    from app.stored import StoredResource


class Clock(Protocol):
    def now(self) -> datetime: ...


class Notes(Protocol):
    """What the rules of a write tell beside its result: warnings for the OperationOutcome, response
    headers, and work run once the transaction has committed (given the app's metrics, or None)."""

    issues: list[Issue]
    committed: list[Callable[[Any], None]]

    def header(self, name: str, value: str) -> None: ...


class WriteContext(Protocol):
    """The interaction under way, as a rule sees it. Nothing here commits: the unit of work does."""

    @property
    def session(self) -> AsyncSession: ...

    @property
    def repo(self) -> Repository: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def base(self) -> str:
        """The FHIR base URL (`Settings.fhir_base`), against which references are resolved."""
        ...

    @property
    def principal(self) -> Principal | None:
        """Who is asking; None for the server's own work (timers, the caseload import)."""
        ...

    @property
    def org(self) -> str | None:
        """The writer's organisation (`created_by_org`), when a user or client is writing."""
        ...

    @property
    def settings(self) -> Settings: ...

    @property
    def guard(self) -> Guard:
        """The access decision and audit of the interaction: a rule adds what it changed or saw."""
        ...

    @property
    def scheduled(self) -> bool:
        """`X-Access-Context: scheduled`: a silent (still audited) read by a scheduled job."""
        ...

    def note(self) -> Notes:
        """Where a rule of the write under way puts what it has to tell."""
        ...


class Written(Protocol):
    """What a write through the engine produced: the stored resource (None when nothing was stored)."""

    @property
    def stored(self) -> StoredResource | None: ...


class Work(WriteContext, Protocol):
    """One transaction of a job: a `WriteContext` that can also write through the engine, so that the
    job's writes are validated and pass the same rules as a client's."""

    async def create(self, resource_type: str, body: Any) -> Written: ...

    async def update(self, resource_type: str, res_id: str, body: Any) -> Written: ...


class UnitOfWork(Protocol):
    """What a job or timer is given: transactions, the settings and the clock, and for the dispatcher
    its bookkeeping sessions, its database and the signal set after a commit that wrote outbox rows."""

    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def bookkeeping(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for the dispatcher's own bookkeeping (no FHIR writes, no audit)."""
        ...

    @property
    def wake(self) -> asyncio.Event: ...

    def unit_of_work(
        self, principal: Principal | None = None, *, request_id: str | None = None,
        client_address: str | None = None, scheduled: bool = False, metrics: object = None,
    ) -> AbstractAsyncContextManager[Work]:
        """One transaction: committed when the block ends normally, rolled back on any exception."""
        ...

"""The unit of work: one transaction, with a `FhirService` that runs every interaction of a request, a
job or a CLI command in it. Committed when the block ends normally, rolled back on any exception; the
queued version, index and outbox rows are flushed (`Repository.flush()`) before COMMIT, and after the
commit the writes' committed work (`FhirService.notes`) runs.

With a principal, every access is decided by the access policy (`Guard.authorize`, once per interaction)
and audited in the same transaction; a refused or failed access is audited afterwards, in a transaction
of its own, so that the refusal is on record although the request's own transaction rolled back.

The parts (database, clock, id source, rules, policy) come from the composition root (`AppContext` in
app/context.py), read when each unit begins, so a test that swaps the clock or settings is obeyed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import FhirError
from app.interactions.interceptors import Interceptors
from app.interactions.server_writes import check_server_write
from app.interactions.service import FhirService
from app.security import audit_trail
from app.security.affiliation import enrich
from app.security.guard import Guard, Policy
from app.security.principal import Principal
from app.storage.failures import as_fhir_error
from app.storage.repository import Clock, IdSource, Indexer, Repository
from app.vocabulary import UserRole

log = logging.getLogger("safeflag")


class Parts(Protocol):
    """What a unit of work is made from (`AppContext` has them)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def interceptors(self) -> Interceptors: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def ids(self) -> IdSource: ...
    @property
    def indexer(self) -> Indexer | None: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def wake(self) -> asyncio.Event:
        """Set after a commit that wrote outbox rows."""
        ...


def repository(parts: Parts, session: AsyncSession) -> Repository:
    """The one writer over `session` (it never commits: the unit of work does)."""
    assert parts.indexer is not None
    return Repository(session, clock=parts.clock, ids=parts.ids, indexer=parts.indexer, check=check_server_write)


@asynccontextmanager
async def unit_of_work(
    parts: Parts, principal: Principal | None = None, *, request_id: str | None = None,
    client_address: str | None = None, scheduled: bool = False, metrics: object = None,
) -> AsyncIterator[FhirService]:
    """One transaction (see the module docstring); `metrics`: the app's, for the committed work."""
    svc: FhirService | None = None
    try:
        async with parts.sessionmaker() as session:
            async with session.begin():
                repo = repository(parts, session)
                if principal is not None:
                    # MASH practitioners read the copies shared with them: resolve those up front
                    shared = "DocumentReference" if principal.role == UserRole.MASH_PRACTITIONER else None
                    principal = await enrich(session, principal, shared)
                guard = Guard(principal, repo, server=parts.settings.fhir_base, now=parts.clock.now,
                              request_id=request_id, client_address=client_address, policy=parts.policy)
                svc = FhirService(repo, parts.settings, parts.interceptors, principal=principal, guard=guard,
                                  scheduled=scheduled)
                yield svc
                await repo.flush()  # the queued version, index and outbox rows, before COMMIT
            if session.info.pop("outbox", False):
                parts.wake.set()
        if svc is not None:
            svc.notes.run_committed(metrics)
    except Exception as exc:
        failure = as_fhir_error(exc)  # the database failed, not the request: 503 (app/storage/failures.py)
        if svc is not None:
            try:
                await _audit_attempt(parts, svc, failure or exc)
            except Exception as audit_exc:
                if failure is None or as_fhir_error(audit_exc) is None:
                    raise
                log.warning("refused attempt not audited: the database is unavailable")
        if failure is not None:
            raise failure from exc
        raise


async def _audit_attempt(parts: Parts, svc: FhirService, exc: Exception) -> None:
    """The refused or failed access on record, in a transaction of its own."""
    status = exc.status if isinstance(exc, FhirError) else 500
    desc = exc.issues[0].diagnostics if isinstance(exc, FhirError) and exc.issues else "server error"
    attempt = svc.guard.attempt_event(status, desc)
    if attempt is None:
        return
    event, org = attempt
    async with parts.sessionmaker() as session, session.begin():
        repo = repository(parts, session)
        await audit_trail.record(repo, event, org=org, now=svc.guard.now(), base=parts.settings.fhir_base)
        await repo.flush()

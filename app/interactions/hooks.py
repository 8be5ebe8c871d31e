"""Resource-type rules around writes, run by FhirService inside the write's own transaction.

- before-write: `(svc, content, current, scratch) -> content` may reject (raise a FhirError) or amend
  what is about to be stored; `current` is the stored resource being replaced (None on create).
- after-write: `(svc, stored, previous, scratch) -> None` may write further resources through the same
  Repository (one writer, one transaction): an ED Encounter's notices, a Subscription's state.
- before-delete: `(svc, current) -> None` may refuse a delete.
`scratch` is a dict shared by the before and after hooks of one write.

Registration happens in `app/rules.py` (the composition of safeguarding, notification and referral rules).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.interactions.service import FhirService
    from app.storage.repository import StoredResource

BeforeWrite = Callable[["FhirService", dict[str, Any], "StoredResource | None", dict[str, Any]],
                       Awaitable[dict[str, Any]]]
AfterWrite = Callable[["FhirService", "StoredResource", "StoredResource | None", dict[str, Any]], Awaitable[None]]
BeforeDelete = Callable[["FhirService", "StoredResource"], Awaitable[None]]

BEFORE_WRITE: dict[str, list[BeforeWrite]] = defaultdict(list)
AFTER_WRITE: dict[str, list[AfterWrite]] = defaultdict(list)
BEFORE_DELETE: dict[str, list[BeforeDelete]] = defaultdict(list)
# after a read or search returned resources to a user (e.g. CP-IS style access notifications)
AfterRead = Callable[["FhirService", "list[StoredResource]"], Awaitable[None]]
AFTER_READ: list[AfterRead] = []


def after_read(fn: AfterRead) -> AfterRead:
    if fn not in AFTER_READ:
        AFTER_READ.append(fn)
    return fn


async def run_after_read(svc: FhirService, resources: list[StoredResource]) -> None:
    for hook in AFTER_READ:
        await hook(svc, resources)


def before_write(*resource_types: str) -> Callable[[BeforeWrite], BeforeWrite]:
    def register(fn: BeforeWrite) -> BeforeWrite:
        for rtype in resource_types:
            if fn not in BEFORE_WRITE[rtype]:
                BEFORE_WRITE[rtype].append(fn)
        return fn

    return register


def after_write(*resource_types: str) -> Callable[[AfterWrite], AfterWrite]:
    def register(fn: AfterWrite) -> AfterWrite:
        for rtype in resource_types:
            if fn not in AFTER_WRITE[rtype]:
                AFTER_WRITE[rtype].append(fn)
        return fn

    return register


def before_delete(*resource_types: str) -> Callable[[BeforeDelete], BeforeDelete]:
    def register(fn: BeforeDelete) -> BeforeDelete:
        for rtype in resource_types:
            if fn not in BEFORE_DELETE[rtype]:
                BEFORE_DELETE[rtype].append(fn)
        return fn

    return register


async def run_before_write(
    svc: FhirService, resource_type: str, content: dict[str, Any], current: StoredResource | None,
    scratch: dict[str, Any],
) -> dict[str, Any]:
    for hook in BEFORE_WRITE.get(resource_type, ()):
        content = await hook(svc, content, current, scratch)
    return content


async def run_after_write(
    svc: FhirService, stored: StoredResource, previous: StoredResource | None, scratch: dict[str, Any]
) -> None:
    for hook in AFTER_WRITE.get(stored.resource_type, ()):
        await hook(svc, stored, previous, scratch)


async def run_before_delete(svc: FhirService, current: StoredResource) -> None:
    for hook in BEFORE_DELETE.get(current.resource_type, ()):
        await hook(svc, current)

"""The interceptor chain: the resource-type rules the engine runs around a write or after a read, inside
the interaction's own transaction. An `Interceptors` is built once by the composition
(`app/resource_rules.py`) and handed to every `FhirService`; nothing registers itself at import time.

- before-write `(ctx, content, current, scratch) -> content` may refuse the write (raise a FhirError) or
  amend what is about to be stored; `current` is the stored resource being replaced (None on create).
- after-write `(ctx, stored, previous, scratch) -> None` may write further resources through the same
  Repository (one writer, one transaction): an ED Encounter's notices, a Subscription's delivery state.
- before-delete `(ctx, current) -> None` may refuse a delete.
- after-read `(ctx, resources) -> None` sees what a read or search returned to a user (access
  notifications).
`ctx` is the interaction under way as a rule sees it (`app.ports.WriteContext`); `scratch` is a dict the
before and after rules of one write share. Rules of one type run in the order they were added.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.ports import WriteContext
    from app.stored import StoredResource

BeforeWrite = Callable[["WriteContext", dict[str, Any], "StoredResource | None", dict[str, Any]],
                       Awaitable[dict[str, Any]]]
AfterWrite = Callable[["WriteContext", "StoredResource", "StoredResource | None", dict[str, Any]], Awaitable[None]]
BeforeDelete = Callable[["WriteContext", "StoredResource"], Awaitable[None]]
AfterRead = Callable[["WriteContext", "list[StoredResource]"], Awaitable[None]]


class Interceptors:
    """The rules of each resource type, in the order they run."""

    def __init__(self) -> None:
        self._before_write: dict[str, list[BeforeWrite]] = {}
        self._after_write: dict[str, list[AfterWrite]] = {}
        self._before_delete: dict[str, list[BeforeDelete]] = {}
        self._after_read: list[AfterRead] = []

    # -- building the chain ------------------------------------------------------------------
    def before_write(self, resource_type: str, *rules: BeforeWrite) -> None:
        """Run `rules`, in this order, before a `resource_type` is stored (after those added before)."""
        self._before_write.setdefault(resource_type, []).extend(rules)

    def after_write(self, resource_type: str, *rules: AfterWrite) -> None:
        self._after_write.setdefault(resource_type, []).extend(rules)

    def before_delete(self, resource_type: str, *rules: BeforeDelete) -> None:
        self._before_delete.setdefault(resource_type, []).extend(rules)

    def after_read(self, *rules: AfterRead) -> None:
        self._after_read.extend(rules)

    # -- running it --------------------------------------------------------------------------
    async def run_before_write(
        self, ctx: WriteContext, resource_type: str, content: dict[str, Any], current: StoredResource | None,
        scratch: dict[str, Any],
    ) -> dict[str, Any]:
        for rule in self._before_write.get(resource_type, ()):
            content = await rule(ctx, content, current, scratch)
        return content

    async def run_after_write(
        self, ctx: WriteContext, stored: StoredResource, previous: StoredResource | None, scratch: dict[str, Any]
    ) -> None:
        for rule in self._after_write.get(stored.resource_type, ()):
            await rule(ctx, stored, previous, scratch)

    async def run_before_delete(self, ctx: WriteContext, current: StoredResource) -> None:
        for rule in self._before_delete.get(current.resource_type, ()):
            await rule(ctx, current)

    async def run_after_read(self, ctx: WriteContext, resources: list[StoredResource]) -> None:
        for rule in self._after_read:
            await rule(ctx, resources)

"""The interceptor chain runs exactly the rules added to it, per resource type, in the order added."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from app.interactions.interceptors import Interceptors
from app.ports import WriteContext
from app.stored import StoredResource

CTX = cast(WriteContext, object())  # the rules below never look at it


def _stored(rtype: str) -> StoredResource:
    return StoredResource(1, rtype, "x", 1, datetime(2026, 3, 2, 9, 30, tzinfo=UTC), False,
                          {"resourceType": rtype, "id": "x"}, None)


async def test_before_write_rules_run_in_the_order_added_and_only_for_their_type() -> None:
    chain = Interceptors()
    seen: list[str] = []

    def rule(name: str) -> Any:
        async def run(ctx: WriteContext, content: dict[str, Any], current: Any, scratch: dict[str, Any]) -> dict[str, Any]:
            seen.append(name)
            scratch[name] = True
            return {**content, "steps": [*content.get("steps", []), name]}

        return run

    chain.before_write("Communication", rule("first"), rule("second"))
    chain.before_write("Communication", rule("third"))
    chain.before_write("Flag", rule("flag"))
    scratch: dict[str, Any] = {}
    out = await chain.run_before_write(CTX, "Communication", {"resourceType": "Communication"}, None, scratch)
    assert out == {"resourceType": "Communication", "steps": ["first", "second", "third"]}
    assert seen == ["first", "second", "third"] and scratch == {"first": True, "second": True, "third": True}
    content = {"resourceType": "Patient"}
    assert await chain.run_before_write(CTX, "Patient", content, None, {}) is content  # no rules: unchanged


async def test_after_write_before_delete_and_after_read_rules_see_what_was_done() -> None:
    chain = Interceptors()
    seen: list[tuple[str, str]] = []

    async def after(ctx: WriteContext, stored: StoredResource, previous: Any, scratch: dict[str, Any]) -> None:
        seen.append(("after-write", stored.resource_type))

    async def before_delete(ctx: WriteContext, current: StoredResource) -> None:
        seen.append(("before-delete", current.resource_type))

    async def after_read(ctx: WriteContext, resources: list[StoredResource]) -> None:
        seen.append(("after-read", ",".join(r.resource_type for r in resources)))

    chain.after_write("Encounter", after)
    chain.before_delete("Subscription", before_delete)
    chain.after_read(after_read)
    await chain.run_after_write(CTX, _stored("Encounter"), None, {})
    await chain.run_after_write(CTX, _stored("Flag"), None, {})
    await chain.run_before_delete(CTX, _stored("Subscription"))
    await chain.run_before_delete(CTX, _stored("Communication"))
    await chain.run_after_read(CTX, [_stored("Flag"), _stored("Patient")])
    assert seen == [("after-write", "Encounter"), ("before-delete", "Subscription"), ("after-read", "Flag,Patient")]


async def test_an_empty_chain_runs_nothing() -> None:
    chain = Interceptors()
    content = {"resourceType": "Flag"}
    assert await chain.run_before_write(CTX, "Flag", content, None, {}) is content

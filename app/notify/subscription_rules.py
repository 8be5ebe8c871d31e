"""The Subscription write rules (interceptors that app/resource_rules.py puts on the chain): validate,
keep the secret out of the stored resource, record who the Subscription belongs to, and keep the
delivery state row in step with the resource (same transaction; a delete ends it).

A Subscription is its creator's (organisation and client, app/security/policy.py `Reach.CREATOR`): the
creator tag is set here on create and carried over on every later write, whatever the body says, so
neither the creator nor an admin changing it can hand it to someone else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.notify import lifecycle
from app.security.policy import CREATOR_SYSTEM, creator_tag, is_creator

if TYPE_CHECKING:
    from app.ports import WriteContext
    from app.stored import StoredResource


def _with_creator(content: dict[str, Any], tag: dict[str, Any] | None) -> dict[str, Any]:
    """`content` with exactly one creator tag (`tag`), or none when `tag` is None; other tags kept."""
    meta = dict(content.get("meta") or {})
    tags = [t for t in meta.get("tag") or [] if not (isinstance(t, dict) and t.get("system") == CREATOR_SYSTEM)]
    if tag is not None:
        tags.append(dict(tag))
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)
    out = {k: v for k, v in content.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


def _stored_tag(current: StoredResource) -> dict[str, Any] | None:
    tags = (current.content.get("meta") or {}).get("tag") or []
    return next((t for t in tags if isinstance(t, dict) and t.get("system") == CREATOR_SYSTEM), None)


async def prepare_subscription(
    ctx: WriteContext, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    principal = ctx.principal
    owner: dict[str, Any] | None = None  # None: the stored creator's claims stay
    if current is None:
        tag = creator_tag(principal) if principal is not None else None
        owner = principal.to_claims() if principal is not None else None
    else:
        tag = _stored_tag(current)
        if principal is not None and is_creator(principal, current.content, current.created_by_org):
            owner = principal.to_claims()  # the creator's own change: its current claims authorise deliveries
    content = _with_creator(content, tag)
    # each delivery is authorised again as the creator, so a notification never shows more than they may read
    content, patch = await lifecycle.prepare(
        ctx.session, content, current, base=ctx.base, webhook_allow=ctx.settings.webhook_hosts,
        owner=owner, limits=ctx.settings.search_limits,
    )
    scratch["subscription_state"] = patch
    return content


async def store_subscription_state(
    ctx: WriteContext, stored: StoredResource, previous: StoredResource | None, scratch: dict[str, Any]
) -> None:
    patch = scratch.get("subscription_state")
    if patch is not None:
        await lifecycle.apply_state(ctx.session, stored.id, patch)
    ctx.guard.note_change(_changes(previous, stored), stored.created_by_org)


async def note_subscription_delete(ctx: WriteContext, current: StoredResource) -> None:
    if not current.deleted:
        await lifecycle.end_state(ctx.session, current.id)
    ctx.guard.note_change([], current.created_by_org)


def _changes(previous: StoredResource | None, stored: StoredResource) -> list[tuple[str, str]]:
    """What the AuditEvent says changed: the status (old -> new) and whether the endpoint or filters
    changed (never the endpoint itself: AuditEvents have more readers than the Subscription)."""
    before = {} if previous is None or previous.deleted else previous.content
    after = stored.content
    out = []
    if before.get("status") != after.get("status"):
        out.append(("status", f"{before.get('status', '(none)')} -> {after.get('status')}"))
    for element, value in (("channel.endpoint", _endpoint), ("criteria", _filters)):
        if value(before) != value(after):
            out.append((element, "changed" if before else "set"))
    return out


def _endpoint(content: dict[str, Any]) -> Any:
    return (content.get("channel") or {}).get("endpoint")


def _filters(content: dict[str, Any]) -> Any:
    return content.get("criteria"), content.get("_criteria")

"""Subscription writes: validation, the write-only secret, and the status machine
requested -> (handshake) -> active | error; `off` is the client's own choice, and where a deleted
Subscription's delivery state goes in the delete's own transaction.

Called by the service layer around the Repository write of a Subscription, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Issue, Unprocessable
from app.fhir.search.limits import SearchLimits
from app.notify.subscriptions import header_issues, parse_spec, split_secret
from app.storage.notify_tables import subscription_state
from app.stored import StoredResource


@dataclass(frozen=True)
class StatePatch:
    status: str
    channel_type: str
    heartbeat_seconds: int | None
    secret: str | None  # None: keep the stored one
    handshake_due: bool
    owner: dict[str, Any] | None


def _delivery_key(content: dict[str, Any]) -> tuple[Any, ...]:
    channel = content.get("channel") or {}
    return (content.get("criteria"), channel.get("type"), channel.get("endpoint"), channel.get("header"))


async def prepare(
    session: AsyncSession,
    content: dict[str, Any],
    current: StoredResource | None,
    *,
    base: str,
    webhook_allow: list[str],
    owner: dict[str, Any] | None = None,
    limits: SearchLimits | None = None,
) -> tuple[dict[str, Any], StatePatch]:
    """Validate a Subscription about to be written; return the content to store and the state to keep."""
    content, secret, issues = split_secret(content)
    if issues:
        raise Unprocessable(issues=issues)
    spec = parse_spec(current.id if current else "new", content, base=base, webhook_allow=webhook_allow,
                      limits=limits)
    if issues := header_issues(spec):
        raise Unprocessable(issues=issues)
    stored_secret = None
    if current is not None and not current.deleted:
        stored_secret = (
            await session.execute(
                select(subscription_state.c.secret).where(subscription_state.c.sub_id == current.id)
            )
        ).scalar_one_or_none()
    if spec.channel_type == "rest-hook" and not (secret or stored_secret):
        raise Unprocessable(
            issues=[Issue("required", "A rest-hook subscription needs the subscription-secret extension "
                          "(32+ characters) to sign its notifications", expression=("Subscription.extension",),
                          msg_id="SF-0710")]
        )
    requested = content.get("status", "requested")
    if requested not in ("requested", "active", "off"):
        raise Unprocessable("Clients may set a Subscription's status to requested, active or off only",
                            msg_id="SF-0711", expression="Subscription.status")
    if spec.channel_type == "websocket" and requested != "off":
        # websocket subscriptions shake hands when a client binds (`/fhir/ws`), not through the dispatcher
        content = {k: v for k, v in content.items() if k != "error"}
        content["status"] = "active"
        return content, StatePatch("active", spec.channel_type, spec.heartbeat_seconds, secret, False, owner)
    changed = current is None or current.deleted or _delivery_key(current.content) != _delivery_key(content)
    if requested == "off":
        status, handshake = "off", False
    elif changed or current is None or current.content.get("status") in ("error", "off", "requested"):
        status, handshake = "requested", True
    else:
        status, handshake = "active", False
    content = {k: v for k, v in content.items() if k != "error"}
    content["status"] = status
    return content, StatePatch(status, spec.channel_type, spec.heartbeat_seconds, secret, handshake, owner)


async def apply_state(session: AsyncSession, sub_id: str, patch: StatePatch) -> None:
    s = subscription_state.c
    values: dict[str, Any] = {
        "status": patch.status,
        "channel_type": patch.channel_type,
        "heartbeat_seconds": patch.heartbeat_seconds,
        "handshake_due": 1 if patch.handshake_due else 0,
        "next_attempt_at": None,
        "failing_since": None,
        "attempts": 0,
        "last_error": None,
    }
    if patch.secret is not None:
        values["secret"] = patch.secret
    if patch.owner is not None:
        values["owner"] = patch.owner
    exists = (await session.execute(select(s.sub_id).where(s.sub_id == sub_id))).first()
    if exists:
        await session.execute(update(subscription_state).where(s.sub_id == sub_id).values(**values))
    else:
        await session.execute(insert(subscription_state).values(sub_id=sub_id, event_count=0, **values))


async def end_state(session: AsyncSession, sub_id: str) -> None:
    """A deleted Subscription collects and delivers nothing more: its state goes `off` (no handshake,
    no retry due), so neither the matcher nor the dispatcher works for it. A delivery already under way
    ends as any other; its event numbers stay for the day the Subscription is written again."""
    await session.execute(
        update(subscription_state)
        .where(subscription_state.c.sub_id == sub_id)
        .values(status="off", handshake_due=0, next_attempt_at=None)
    )

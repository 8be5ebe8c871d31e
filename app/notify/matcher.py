"""Match committed changes against subscriptions: one `notification` row per (subscription, event),
numbered gap-free per subscription in the same transaction that consumes the outbox rows.

Numbering takes the subscription's state row lock (its `event_count`), which every delivery of that
subscription also needs (lease, renewal, outcome). So a batch is matched first, reads only, and its
events are numbered last: one UPDATE per subscription (in subscription order, so that two
dispatchers never wait on each other in a cycle) and one INSERT, just before the commit. The lock is
then held for those statements, not for the whole batch's matching, and a delivery under way is
never held up behind it.

Filters are evaluated by the shared in-memory search matcher, so a filter means exactly what the same
search would mean.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import FhirError
from app.fhir.search.matcher import matches
from app.notify.allow import host_port
from app.notify.outbox import OutboxRow
from app.notify.subscriptions import SubscriptionSpec, parse_spec
from app.notify.topics import TOPIC_RESOURCE_TYPES, topics_for
from app.security.affiliation import enrich
from app.security.policy import Visibility, visibility
from app.security.principal import ClaimError, Principal
from app.storage.notify_tables import notification, subscription_state
from app.storage.tables import resource, resource_version

SpecCache = dict[tuple[str, int], "tuple[SubscriptionSpec, Principal | None] | None"]


async def live_subscriptions(
    session: AsyncSession, base: str, cache: SpecCache
) -> list[tuple[SubscriptionSpec, Principal | None]]:
    """Subscriptions that collect events: requested (awaiting handshake) or active."""
    r, s = resource.c, subscription_state.c
    stmt = (
        select(r.res_id, r.version_id, r.content, s.owner)
        .join(subscription_state, s.sub_id == r.res_id)
        .where(r.res_type == "Subscription", r.deleted.is_(False), s.status.in_(("requested", "active")))
        # one order for everyone: matchers lock subscription_state rows (event counters) in this order,
        # so two dispatchers on one PostgreSQL never wait on each other in a cycle (deadlock)
        .order_by(r.res_id)
    )
    out = []
    for res_id, version, content, owner in (await session.execute(stmt)).all():
        key = (res_id, version)
        if key not in cache:
            spec: SubscriptionSpec | None
            try:
                spec = parse_spec(res_id, content, base=base, webhook_allow=[])
            except FhirError:
                # allow-list and other delivery-time checks are not match-time concerns
                spec = _lenient(res_id, content, base)
            cache[key] = (spec, _owner(owner, base)) if spec is not None else None
        entry = cache[key]
        if entry is not None:
            out.append(entry)
    return out


def _owner(claims: dict[str, Any] | None, base: str) -> Principal | None:
    """The principal that created the subscription (None: created by the server itself)."""
    if not claims:
        return None
    try:
        return Principal.from_claims(claims, base=base)
    except ClaimError:
        return None


async def _may_see(session: AsyncSession, owner: Principal | None, row: OutboxRow, content: dict[str, Any]) -> bool:
    """Authorised again at each event: the subscriber must be able to read what it would be told about."""
    if owner is None:
        return True
    created_by = (
        await session.execute(select(resource.c.created_by_org).where(
            resource.c.res_type == row.res_type, resource.c.res_id == row.res_id))
    ).scalar_one_or_none()
    principal = await enrich(session, owner, row.res_type)
    return visibility(principal, row.res_type, content, created_by) is Visibility.VISIBLE


def _lenient(res_id: str, content: dict[str, Any], base: str) -> SubscriptionSpec | None:
    try:
        return parse_spec(res_id, content, base=base, webhook_allow=_any_host(content))
    except FhirError:
        return None


def _any_host(content: dict[str, Any]) -> list[str]:
    endpoint = (content.get("channel") or {}).get("endpoint")
    return [host_port(endpoint)] if isinstance(endpoint, str) else []


async def _version_content(session: AsyncSession, row: OutboxRow) -> dict[str, Any] | None:
    v = resource_version.c
    stmt = select(v.content).where(v.res_type == row.res_type, v.res_id == row.res_id, v.version_id == row.version_id)
    return (await session.execute(stmt)).scalar_one_or_none()


def _resolver(session: AsyncSession) -> Any:
    async def resolve(rtype: str, rid: str) -> dict[str, Any] | None:
        stmt = select(resource.c.content).where(
            resource.c.res_type == rtype, resource.c.res_id == rid, resource.c.deleted.is_(False)
        )
        return (await session.execute(stmt)).scalar_one_or_none()

    return resolve


async def next_event_numbers(session: AsyncSession, sub_id: str, count: int) -> range:
    """The next `count` event numbers of `sub_id`, taken in one statement (the row stays locked until commit)."""
    s = subscription_state.c
    stmt = (
        update(subscription_state)
        .where(s.sub_id == sub_id)
        .values(event_count=s.event_count + count)
        .returning(s.event_count)
    )
    last = int((await session.execute(stmt)).scalar_one())
    return range(last - count + 1, last + 1)


async def match_rows(
    session: AsyncSession, rows: list[OutboxRow], *, base: str, now: datetime, cache: SpecCache
) -> int:
    """Create notification rows for `rows`; returns how many were created."""
    relevant = [r for r in rows if r.res_type in TOPIC_RESOURCE_TYPES]
    if not relevant:
        return 0
    specs = await live_subscriptions(session, base, cache)
    if not specs:
        return 0
    resolve = _resolver(session)
    matched: dict[str, list[OutboxRow]] = {}  # subscription -> its events, in outbox order
    for row in relevant:
        content = await _version_content(session, row)
        topics = {t.url for t in topics_for(row.res_type, row.action, content)}
        if not topics or content is None:
            continue
        for spec, owner in specs:
            if spec.topic.url not in topics:
                continue
            if not await matches(row.res_type, content, list(spec.criteria), resolve):
                continue
            if not await _may_see(session, owner, row, content):
                continue
            matched.setdefault(spec.id, []).append(row)
    values = []
    for sub_id in sorted(matched):  # one lock order for every dispatcher
        events = matched[sub_id]
        numbers = await next_event_numbers(session, sub_id, len(events))
        values += [
            {"sub_id": sub_id, "event_number": number, "outbox_id": row.id, "focus_type": row.res_type,
             "focus_id": row.res_id, "focus_version": row.version_id, "action": row.action,
             "occurred_at": row.occurred_at, "matched_at": now, "attempts": 0}
            for number, row in zip(numbers, events, strict=True)
        ]
    if values:
        await session.execute(insert(notification), values)
    return len(values)

"""`$status` and `$events` on Subscriptions (Backport IG operations
https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-status.html and
-events.html): the current status and event count, and a replay of any event-number range.

Only the Subscription's creator (or an admin) reaches these (the read before them answers 404 to anyone
else); at the type level, `$status?id=` reads each id the same way, and without ids it covers the
Subscriptions a search shows the caller (its own; every one for admin). `$events` is authorised again
for its caller, event by event, as a read of the focus would be: an event whose focus the caller may not read keeps its number and timestamp (the numbering stays gap-free)
but loses its focus, context and resource; when a restricted one is among them, the notice a search
gives (`labels.withheld_issue`) is on the status entry's `response.outcome`. `content` may narrow
the Subscription's own payload, never widen it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import BadRequest, NotFound, operation_outcome
from app.fhir.bundles import transient_entry
from app.fhir.search.results import SearchResult
from app.notify.bundle import Event, notification_bundle, status_parameters
from app.notify.delivery import _context_refs
from app.notify.subscriptions import CONTENT_CODES, PAYLOAD_EXT
from app.notify.topics import TOPICS
from app.security.labels import withheld_issue
from app.security.policy import Visibility, visibility
from app.security.principal import Principal
from app.storage import buffer
from app.storage.notify_tables import notification, subscription_state
from app.storage.repository import utc_ms
from app.storage.tables import resource, resource_version
from app.stored import StoredResource

MAX_REPLAY = 1000


class Searcher(Protocol):
    """The interaction engine's search (as a client's `Subscription?status=` runs: authorised, restricted,
    audited): the searchset Bundle and the result it shows."""

    async def search_result(
        self, resource_type: str, query: list[tuple[str, str]], *, strict: bool = ...
    ) -> tuple[dict[str, Any], SearchResult]: ...


def _content_code(sub: StoredResource) -> str:
    payload = ((sub.content.get("channel") or {}).get("_payload") or {}).get("extension") or []
    for ext in payload:
        if ext.get("url") == PAYLOAD_EXT and ext.get("valueCode") in CONTENT_CODES:
            return str(ext["valueCode"])
    return "id-only"


async def _count(session: AsyncSession, sub_id: str) -> int:
    value = (
        await session.execute(select(subscription_state.c.event_count).where(subscription_state.c.sub_id == sub_id))
    ).scalar_one_or_none()
    return int(value or 0)


async def status(session: AsyncSession, subs: list[StoredResource], fhir_base: str, self_url: str) -> dict[str, Any]:
    """A `searchset` Bundle holding each subscription's SubscriptionStatus (the operation's `return` is
    a Bundle, one status per Subscription asked about; STU 1.1 OperationDefinition above)."""
    entries = []
    for sub in subs:
        params = status_parameters(
            fhir_base=fhir_base, sub_id=sub.id, topic_url=str(sub.content.get("criteria")),
            status=str(sub.content.get("status")), type_="query-status",
            events_since_start=await _count(session, sub.id), content=_content_code(sub),
        )
        entries.append(transient_entry(params, "match"))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": self_url}],
    }
    if entries:
        bundle["entry"] = entries
    return bundle


async def callers_subscriptions(svc: Searcher, statuses: list[str], limit: int) -> list[StoredResource]:
    """The Subscriptions the caller may see (its own; every one for admin), searched and audited as
    `Subscription?status=` is; more than `limit` is 400 `too-costly` rather than a silent cut."""
    query = [("status", ",".join(statuses))] if statuses else []
    _, found = await svc.search_result("Subscription", [*query, ("_count", str(limit)), ("_total", "accurate")])
    if found.total is not None and found.total > len(found.matches):
        raise BadRequest(f"$status covers at most {limit} Subscriptions; name them with 'id' or narrow with 'status'",
                         msg_id="SF-0723", code="too-costly")
    return list(found.matches)


def _number(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not '{raw}'", msg_id="SF-0720", expression=name)
    return int(raw)


def narrowed(requested: str | None, own: str) -> str:
    """The payload `$events` answers with: the one asked for if it is no wider than the Subscription's."""
    if requested is not None and CONTENT_CODES.index(requested) < CONTENT_CODES.index(own):
        return requested
    return own


async def events(
    session: AsyncSession, sub: StoredResource, fhir_base: str, *, since: str | None, until: str | None,
    content: str | None, caller: Principal | None, now: datetime,
) -> dict[str, Any]:
    """`$events`: the Subscription's events as a query-event notification Bundle dated `now` (the clock's)."""
    lo, hi = _number("eventsSinceNumber", since), _number("eventsUntilNumber", until)
    if content is not None and content not in CONTENT_CODES:
        raise BadRequest(f"content must be one of {', '.join(CONTENT_CODES)}", msg_id="SF-0721", expression="content")
    if sub.content.get("criteria") not in TOPICS:
        raise NotFound("This Subscription has no events", msg_id="SF-0722")
    n, v, r = notification.c, resource_version.c, resource.c
    stmt = (
        select(n.event_number, n.occurred_at, n.focus_type, n.focus_id, n.focus_version, n.action, v.content,
               r.created_by_org)
        .select_from(notification)
        .outerjoin(resource_version, (v.res_type == n.focus_type) & (v.res_id == n.focus_id)
                   & (v.version_id == n.focus_version))
        .outerjoin(resource, (r.res_type == n.focus_type) & (r.res_id == n.focus_id))
        .where(n.sub_id == sub.id)
    )
    if lo is not None:
        stmt = stmt.where(n.event_number >= lo)
    if hi is not None:
        stmt = stmt.where(n.event_number <= hi)
    await buffer.flush(session)  # the versions this transaction queued, so that the join sees them
    rows = (await session.execute(stmt.order_by(n.event_number).limit(MAX_REPLAY))).all()
    code = narrowed(content, _content_code(sub))
    evs, withheld = [], False
    for row in rows:
        body = row.content
        seen = Visibility.HIDDEN if body is None else (
            Visibility.VISIBLE if caller is None
            else visibility(caller, row.focus_type, body, row.created_by_org, interaction="read"))
        withheld |= seen is Visibility.WITHHELD
        shown = seen is Visibility.VISIBLE
        evs.append(Event(int(row.event_number), row.occurred_at, row.focus_type, row.focus_id, row.focus_version,
                         row.action, body if shown and code == "full-resource" else None,
                         tuple(_context_refs(body)) if shown else (), withheld=not shown))
    return notification_bundle(
        fhir_base=fhir_base, sub_id=sub.id, topic_url=str(sub.content.get("criteria")),
        status=str(sub.content.get("status")), type_="query-event", events_since_start=await _count(session, sub.id),
        now=utc_ms(now), events=evs, content=code,
        notice=operation_outcome([withheld_issue()]) if withheld else None,
    )

"""Deleting a Subscription ends its delivery in the same transaction: its state goes `off`, the
dispatcher no longer leases it (no handshake, no retry, no heartbeat, no pending notice sent), and its
`$status` and `$events` answer 410 Gone to its creator (404 to anyone else, as for any record they may
not see). Written again, it starts over with a handshake and its numbering goes on. Both databases."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from app.context import AppContext
from app.notify.dispatcher import Dispatcher
from app.storage.notify_tables import subscription_state
from tests.notify.conftest import notice, subscription
from tests.notify.owners import intruder, owner
from tests.support.fhir_data import outcome
from tests.support.receiver import Receiver


async def _state(ctx: AppContext, sub_id: str) -> tuple[Any, ...]:
    s = subscription_state.c
    async with ctx.sessionmaker() as session:
        row = (await session.execute(
            select(s.status, s.handshake_due, s.next_attempt_at, s.event_count).where(s.sub_id == sub_id)
        )).one()
    return tuple(row)


def _gone(sub_id: str, version: int) -> dict[str, Any]:
    return outcome("deleted", f"SF-0302: Subscription/{sub_id} was deleted (version {version})")


async def test_deleting_a_subscription_ends_its_delivery(
    notify_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher,
) -> None:
    created = await api.post("/fhir/Subscription", json=subscription(receiver.url, heartbeat=60))
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    while await dispatcher.run_once():
        pass
    assert len(receiver.of_type("handshake")) == 1
    sent = await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
    assert sent.status_code == 201, sent.text
    assert await dispatcher._match_all() == 1  # event 1 matched, not yet sent
    assert await _state(notify_ctx, sid) == ("active", 0, None, 1)

    deleted = await api.delete(f"/fhir/Subscription/{sid}")
    assert deleted.status_code in (200, 204), deleted.text
    assert await _state(notify_ctx, sid) == ("off", 0, None, 1)
    assert await dispatcher._due_subscriptions(dispatcher._now()) == []  # nothing leased: it is off
    assert await dispatcher.start_deliveries() == []  # no delivery starts
    await dispatcher.run_once()
    assert receiver.events() == [] and len(receiver.received) == 1  # the handshake only

    # a later notice is not matched to it either
    again = await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
    assert again.status_code == 201, again.text
    await dispatcher.run_once()
    assert await _state(notify_ctx, sid) == ("off", 0, None, 1)
    assert len(receiver.received) == 1


async def test_status_and_events_of_a_deleted_subscription_are_gone(
    notify_ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver, dispatcher: Dispatcher,
) -> None:
    created = await api.post("/fhir/Subscription", json=subscription(receiver.url), headers=owner(notify_ctx))
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    while await dispatcher.run_once():
        pass  # handshake: version 2 (active)
    deleted = await api.delete(f"/fhir/Subscription/{sid}", headers=owner(notify_ctx))
    assert deleted.status_code in (200, 204), deleted.text

    for path in (f"/fhir/Subscription/{sid}/$status", f"/fhir/Subscription/{sid}/$events",
                 f"/fhir/Subscription/{sid}/$events?eventsSinceNumber=1", f"/fhir/Subscription/$status?id={sid}"):
        r = await api.get(path, headers=owner(notify_ctx))
        assert (r.status_code, r.json()) == (410, _gone(sid, 3)), path
        r = await api.get(path, headers=intruder(notify_ctx))  # not the creator's: unknown, as ever
        assert (r.status_code, r.json()) == (404, outcome("not-found", f"SF-0301: Subscription/{sid} is not known",
                                                          ["id"])), path
    listed = await api.get("/fhir/Subscription/$status", headers=owner(notify_ctx))
    assert listed.status_code == 200 and listed.json()["total"] == 0  # the creator's status list drops it

    # written again, it starts over: a handshake, and the state follows the resource
    back = await api.put(f"/fhir/Subscription/{sid}", json={**subscription(receiver.url), "id": sid},
                         headers=owner(notify_ctx))
    assert back.status_code in (200, 201), back.text
    assert (await _state(notify_ctx, sid))[:2] == ("requested", 1)
    while await dispatcher.run_once():
        pass
    assert len(receiver.of_type("handshake")) == 2
    status = await api.get(f"/fhir/Subscription/{sid}/$status", headers=owner(notify_ctx))
    assert status.status_code == 200, status.text

"""Matching holds a subscription's state row (its event counter, which every delivery of that
subscription also updates: lease, renewal, outcome) for as short a time as it can: a batch is matched
with reads only, and its events are numbered at the end, one UPDATE per subscription and one INSERT,
right before the outbox rows are marked and the transaction commits. The numbers stay gap-free and in
outbox order. On both databases, with the statements the database was sent.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, select

from app.context import AppContext
from app.notify.dispatcher import Dispatcher
from app.storage.notify_tables import notification, subscription_state
from tests.notify.conftest import subscription
from tests.notify.owners import ELSEWHERE, SH_ORG
from tests.support.fhir_data import flag, patient

HOOK = "http://127.0.0.1/hook"  # matched only, never delivered, here


async def test_a_batch_is_numbered_in_one_statement_per_subscription_just_before_commit(
    notify_ctx: AppContext, api: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    r = await api.post("/fhir/Patient", json=patient("9990000018"))
    child = r.json()["id"]
    subs = []
    for _ in range(2):  # two subscriptions to the same Flags
        r = await api.post("/fhir/Subscription", json=subscription(
            HOOK, topic="safeguarding-flag", filters=(f"Flag?patient=Patient/{child}",)))
        assert r.status_code == 201, r.text
        subs.append(r.json()["id"])
    flags = []
    for author in (ELSEWHERE, SH_ORG, "Organization/third"):  # one active plan flag per author
        r = await api.post("/fhir/Flag", json=flag(f"Patient/{child}", author))
        assert r.status_code == 201, r.text
        flags.append(r.json()["id"])

    sent: list[str] = []

    def record(_conn: Any, _cur: Any, sql: str, *_a: Any) -> None:
        sent.append(" ".join(sql.split()))

    event.listen(notify_ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await dispatcher.match_once() >= 3
    finally:
        event.remove(notify_ctx.engine.sync_engine, "before_cursor_execute", record)

    first = next(i for i, s in enumerate(sent) if s.startswith("UPDATE subscription_state"))
    tail = [s.split(" SET")[0].split(" (")[0] for s in sent[first:]]
    # both counters (in subscription order), then every event at once, then the outbox rows: no read
    # (no matching work) while a counter is locked
    assert tail == ["UPDATE subscription_state", "UPDATE subscription_state", "INSERT INTO notification",
                    "UPDATE outbox_event"]
    async with notify_ctx.sessionmaker() as session:
        n = notification.c
        rows = (await session.execute(
            select(n.sub_id, n.event_number, n.focus_id).order_by(n.sub_id, n.event_number))).all()
        counts = dict((await session.execute(
            select(subscription_state.c.sub_id, subscription_state.c.event_count))).all())
    assert [tuple(r) for r in rows] == [(sub, i + 1, fid) for sub in sorted(subs) for i, fid in enumerate(flags)]
    assert counts == {sub: 3 for sub in subs}

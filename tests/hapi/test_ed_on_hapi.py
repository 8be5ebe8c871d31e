"""An ED system on HAPI feeds SafeFlag through HAPI's own subscriptions (issue 7, contract section 5).

A HAPI R4 criteria REST-hook Subscription (`Encounter?class=EMER`, payload application/fhir+json, header
`Authorization: Bearer <system token>` minted by `safeflag token` for SafeFlag) points at the FHIR base of
a real `safeflag serve` process (127.0.0.1, SAFEFLAG_WEBHOOK_ALLOW naming the receiver's port). Each Encounter the ED creates
on HAPI is PUT by HAPI to SafeFlag's `Encounter/{id}` (update-as-create), which writes the health
visitor's notice (Communication + acknowledgement Task) and notifies a real receiver subscribed on SafeFlag
to the `ed-attendance` topic. The HAPI Subscription carries HAPI's `subscription-resthook-strip-version-ids`
channel extension: by default HAPI's PUT carries `If-Match: W/"<its version>"`, and SafeFlag (as HTTP
says) answers 412 to an If-Match on an id it does not hold; test_parity.py pins that difference. The
child's Patient and the ED's Organization carry the same ids on both servers (HAPI enforces referential
integrity on write; SafeFlag then resolves the subject by id); one attendance names the child by NHS number
only, which needs no shared id at all.

Latency, for every attendance: HAPI's part from the start of the Encounter create on HAPI to the arrival
of HAPI's PUT at SafeFlag (SafeFlag's request log: completion time minus duration), SafeFlag's part from
that arrival to the notification at the receiver. HAPI matches in ~5 s batches (hapi-sandbox.md), so its
part is seconds; the test prints both and records them as JUnit properties; bounds only catch a hang.
https://hl7.org/fhir/R4/subscription.html
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import orjson
import pytest

from tests.e2e.server import RunningServer, start_server
from tests.hapi.ed_feed import (
    CS,
    arrivals_at_safeflag,
    content,
    encounter,
    eventually,
    hapi_subscription,
    notice_and_task,
    notified,
    ok,
    probe_until_registered,
    safeflag_subscription,
    stats,
    system_token,
    world,
)
from tests.hapi.support import FHIR_JSON, new_nhs_number, nhs_identifier
from tests.support.postgres import free_port
from tests.support.receiver import Receiver

pytestmark = pytest.mark.hapi

ATTENDANCES = 10
ACTIVATION_TIMEOUT_S = 120.0
DELIVERY_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def hook_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def safeflag(hook_port: int) -> Iterator[RunningServer]:
    # SQLite, in-process dispatcher; the allow-list names the receiver's exact port
    srv = start_server(extra_env={"SAFEFLAG_WEBHOOK_ALLOW": f"127.0.0.1:{hook_port}"})
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
async def receiver(hook_port: int) -> AsyncIterator[Receiver]:
    async with Receiver(port=hook_port) as r:
        yield r


async def test_encounters_created_on_hapi_notify_the_health_visitor_through_safeflag(
    hapi: httpx.AsyncClient,
    safeflag: RunningServer,
    receiver: Receiver,
    record_testsuite_property: Callable[[str, object], None],
) -> None:
    nhs = new_nhs_number()
    # the HAPI database lives for the session (and may be reused): ids unique to this run
    child, organization, team = world(uuid.uuid4().hex[:8], nhs)
    ed = f"Organization/{organization['id']}"
    fhir_json = {"Content-Type": FHIR_JSON}
    async with httpx.AsyncClient(base_url=safeflag.fhir_base, headers=safeflag.headers, timeout=30) as sf:
        # SafeFlag: the same child and ED, the child's health visitor, and a subscriber for her notices
        for resource in (organization, child, *team):
            await ok(sf.put(f"/{resource['resourceType']}/{resource['id']}", json=resource))
        await ok(sf.post("/Subscription", json=safeflag_subscription(receiver.url)), 201)
        await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1, 30)
        # HAPI: the same child and ED (referential integrity on write), and the ED system's subscription
        for resource in (organization, child):
            await ok(
                hapi.put(f"/{resource['resourceType']}/{resource['id']}", json=resource, headers=fhir_json)
            )
        token = system_token(safeflag, ed)
        subscription = await ok(
            hapi.post("/Subscription", json=hapi_subscription(safeflag.fhir_base, token), headers=fhir_json),
            201,
        )
        sub_path = f"/Subscription/{subscription['id']}"
        try:

            async def active() -> bool:
                return bool((await hapi.get(sub_path)).json()["status"] == "active")

            await eventually(active, ACTIVATION_TIMEOUT_S, "HAPI activating the subscription")
            probes = await probe_until_registered(hapi, sf, child["id"], ed)

            # The measured attendances: nine by reference, the last by NHS number only.
            started: dict[str, float] = {}
            for i in range(ATTENDANCES):
                subject = (
                    {"reference": f"Patient/{child['id']}"}
                    if i < ATTENDANCES - 1
                    else {"type": "Patient", "identifier": nhs_identifier(nhs)}
                )
                t0 = time.time()
                created = await ok(
                    hapi.post("/Encounter", json=encounter(subject, ed), headers=fhir_json), 201
                )
                started[created["id"]] = t0
                await asyncio.sleep(0.3)

            async def all_notified() -> bool:
                return set(started) <= set(notified(receiver))

            await eventually(
                all_notified, DELIVERY_TIMEOUT_S, "notifications of every attendance", every=0.05
            )
            await asyncio.sleep(1.0)  # a duplicate would arrive within moments
            notices = {eid: await notice_and_task(sf, eid) for eid in started}
            stored = {eid: await ok(sf.get(f"/Encounter/{eid}")) for eid in started}
        finally:
            await hapi.delete(sub_path)

    on_hapi = {eid: await ok(hapi.get(f"/Encounter/{eid}")) for eid in started}
    arrived = arrivals_at_safeflag(safeflag)
    received = notified(receiver)
    # HAPI's PUT made SafeFlag store HAPI's Encounter under HAPI's id (update-as-create), content unchanged
    for eid in started:
        assert content(stored[eid]) == content(on_hapi[eid])
        assert stored[eid]["meta"]["versionId"] == "1"
    for eid, (comm, task) in notices.items():
        assert comm["category"] == [
            {"coding": [{"system": CS + "safeguarding-communication-category", "code": "ed-attendance"}]}
        ]
        assert comm["recipient"] == [{"reference": "PractitionerRole/hv-1"}]
        assert (comm["encounter"], comm["sender"]) == ({"reference": f"Encounter/{eid}"}, {"reference": ed})
        assert (task["status"], task["owner"], task["focus"]) == (
            "requested",
            {"reference": "PractitionerRole/hv-1"},
            {"reference": f"Communication/{comm['id']}"},
        )
        # exactly one notification per attendance, carrying the notice itself
        assert [c for _, c in received[eid]] == [comm]
    assert set(received) - set(started) <= set(probes)

    hapi_part = [arrived[e] - started[e] for e in started]
    safeflag_part = [min(t for t, _ in received[e]) - arrived[e] for e in started]
    total = [min(t for t, _ in received[e]) - started[e] for e in started]
    report = {
        "hapi_part_s": stats(hapi_part),
        "safeflag_part_s": stats(safeflag_part),
        "end_to_end_s": stats(total),
    }
    for name, figures in report.items():
        record_testsuite_property(f"ed_on_hapi_{name}", orjson.dumps(figures).decode())
    print(
        f"\nED on HAPI, {ATTENDANCES} attendances (seconds): "
        + "; ".join(
            f"{name} median {s['median']:.3f} min {s['min']:.3f} max {s['max']:.3f}"
            for name, s in report.items()
        )
    )
    assert all(0 < x < DELIVERY_TIMEOUT_S for x in hapi_part)
    assert all(0 < x < 10 for x in safeflag_part)

"""rest-hook delivery end to end: a real receiving HTTP server, a real dispatcher, both databases."""

from __future__ import annotations

import hashlib
import hmac

import httpx
from sqlalchemy import func, select

from app.notify.dispatcher import Dispatcher
from app.storage.notify_tables import notification, outbox_event
from tests.conftest import FHIR
from tests.notify.conftest import SECRET, TOPIC, notice, subscription
from tests.support.receiver import Receiver

BACKPORT_STATUS = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"


async def _subscribe(api: httpx.AsyncClient, d: Dispatcher, r: Receiver, **kw: object) -> str:
    resp = await api.post("/fhir/Subscription", json=subscription(r.url, **kw))  # type: ignore[arg-type]
    assert resp.status_code == 201, resp.text
    sub = resp.json()
    assert sub["status"] == "requested"
    assert "extension" not in sub  # the secret is write-only
    await d.run_once()
    await r.wait_for(lambda: len(r.of_type("handshake")) == 1)
    return str(sub["id"])


def _params(received: object) -> dict:
    params = received.json["entry"][0]["resource"]["parameter"]  # type: ignore[attr-defined]
    return {p["name"]: p for p in params}


async def test_handshake_then_event_delivered_signed(api: httpx.AsyncClient, dispatcher: Dispatcher,
                                                     receiver: Receiver) -> None:
    sub_id = await _subscribe(api, dispatcher, receiver, filters=("Communication?recipient=PractitionerRole/hv1",),
                              headers=("X-Team: north",))
    hs = receiver.of_type("handshake")[0]
    assert _params(hs)["status"]["valueCode"] == "requested"
    assert _params(hs)["events-since-subscription-start"]["valueString"] == "0"
    status = (await api.get(f"/fhir/Subscription/{sub_id}")).json()
    assert status["status"] == "active" and status["meta"]["versionId"] == "2"

    created = (await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))).json()
    await api.post("/fhir/Communication", json=notice("PractitionerRole/other"))  # filtered out
    await dispatcher.run_once()
    await receiver.wait_for(lambda: receiver.events() == [1])
    got = receiver.of_type("event-notification")[0]
    assert got.headers["x-safeflag-signature"] == "sha256=" + hmac.new(SECRET.encode(), got.body,
                                                                       hashlib.sha256).hexdigest()
    assert got.headers["x-team"] == "north"
    assert got.headers["content-type"] == "application/fhir+json"
    bundle = got.json
    assert bundle["type"] == "history"
    params = _params(got)
    assert params["subscription"]["valueReference"] == {"reference": f"{FHIR}/Subscription/{sub_id}"}
    assert params["topic"]["valueCanonical"] == TOPIC + "ed-attendance"
    assert params["events-since-subscription-start"]["valueString"] == "1"
    parts = {p["name"]: p for p in params["notification-event"]["part"]}
    assert parts["event-number"]["valueString"] == "1"
    assert parts["focus"]["valueReference"] == {"reference": f"{FHIR}/Communication/{created['id']}"}
    assert parts["additional-context"]["valueReference"] == {"reference": f"{FHIR}/Patient/p1"}
    assert bundle["entry"][1] == {
        "fullUrl": f"{FHIR}/Communication/{created['id']}",
        "request": {"method": "POST", "url": "Communication"},
        "response": {"status": "201", "etag": 'W/"1"'},
    }


async def test_full_resource_and_empty_payloads(api: httpx.AsyncClient, dispatcher: Dispatcher,
                                                receiver: Receiver) -> None:
    await _subscribe(api, dispatcher, receiver, content="full-resource")
    created = (await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))).json()
    await dispatcher.run_once()
    await receiver.wait_for(lambda: receiver.events() == [1])
    entry = receiver.of_type("event-notification")[0].json["entry"][1]
    assert entry["resource"] == created


async def test_rolled_back_write_sends_nothing(api: httpx.AsyncClient, dispatcher: Dispatcher,
                                               receiver: Receiver, notify_ctx: object) -> None:
    await _subscribe(api, dispatcher, receiver)
    bad = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": notice("PractitionerRole/hv1"), "request": {"method": "POST", "url": "Communication"}},
            {"resource": {"resourceType": "Flag", "status": "bogus"}, "request": {"method": "POST", "url": "Flag"}},
        ],
    }
    resp = await api.post("/fhir", json=bad)
    assert resp.status_code == 400
    await dispatcher.run_once()
    async with notify_ctx.sessionmaker() as s:  # type: ignore[attr-defined]
        assert (await s.execute(select(func.count()).select_from(notification))).scalar_one() == 0
        pending = (await s.execute(select(func.count()).select_from(outbox_event).where(
            outbox_event.c.processed_at.is_(None)))).scalar_one()
        assert pending == 0
    assert receiver.events() == []


async def test_receiver_down_then_back_delivers_in_order(api: httpx.AsyncClient, dispatcher: Dispatcher,
                                                         receiver: Receiver) -> None:
    sub_id = await _subscribe(api, dispatcher, receiver)
    receiver.status = 503
    for _ in range(5):
        await api.post("/fhir/Communication", json=notice("PractitionerRole/hv1"))
    for _ in range(3):
        await dispatcher.run_once()
    assert receiver.events() == []
    state = (await api.get(f"/fhir/Subscription/{sub_id}/$status")).json()
    # the operation's `return` is a searchset Bundle of SubscriptionStatus Parameters (Backport IG STU 1.1)
    status = state["entry"][0]["resource"]
    assert state == {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "link": [{"relation": "self", "url": f"{FHIR}/Subscription/{sub_id}/$status"}],
        "entry": [{"fullUrl": f"urn:uuid:{status['id']}", "resource": status, "search": {"mode": "match"}}],
    }
    assert status == {
        "resourceType": "Parameters",
        "id": status["id"],
        "meta": {"profile": [BACKPORT_STATUS]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": f"{FHIR}/Subscription/{sub_id}"}},
            {"name": "topic", "valueCanonical": TOPIC + "ed-attendance"},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "query-status"},
            {"name": "events-since-subscription-start", "valueString": "5"},
        ],
    }
    receiver.status = 200
    for _ in range(50):
        await dispatcher.run_once()
        if receiver.events() == [1, 2, 3, 4, 5]:
            break
        import asyncio

        await asyncio.sleep(0.05)
    assert receiver.events() == [1, 2, 3, 4, 5]
    replay = (await api.get(f"/fhir/Subscription/{sub_id}/$events",
                            params={"eventsSinceNumber": "2", "eventsUntilNumber": "4"})).json()
    numbers = [
        part["valueString"]
        for p in replay["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"
        for part in p["part"] if part["name"] == "event-number"
    ]
    assert numbers == ["2", "3", "4"]
    assert {p["name"]: p for p in replay["entry"][0]["resource"]["parameter"]}["type"]["valueCode"] == "query-event"


async def test_bad_subscriptions_rejected(api: httpx.AsyncClient, receiver: Receiver) -> None:
    no_secret = await api.post("/fhir/Subscription", json=subscription(receiver.url, secret=None))
    assert no_secret.status_code == 422
    assert no_secret.json()["issue"][0]["diagnostics"].startswith("SF-0710: A rest-hook subscription needs")
    far = await api.post("/fhir/Subscription", json=subscription("http://example.org/hook"))
    assert far.status_code == 422
    assert far.json()["issue"] == [{
        "severity": "error", "code": "invalid",
        "diagnostics": "SF-0707: Endpoint 'example.org:80' is not in SAFEFLAG_WEBHOOK_ALLOW (entries are host:port, "
                       "or a host for its scheme's default port)",
        "expression": ["Subscription.channel.endpoint"],
    }]
    bad_filter = await api.post("/fhir/Subscription", json=subscription(
        receiver.url, filters=("Communication?sender=Organization/x",)))
    assert bad_filter.status_code == 422
    assert bad_filter.json()["issue"][0]["diagnostics"] == (
        "SF-0704: Filter parameter 'sender' is not allowed for topic ed-attendance (allowed: recipient, patient)")
    short = await api.post("/fhir/Subscription", json=subscription(receiver.url, secret="short"))
    assert short.status_code == 422


async def test_heartbeat(api: httpx.AsyncClient, dispatcher: Dispatcher, receiver: Receiver) -> None:
    await _subscribe(api, dispatcher, receiver, heartbeat=1)
    import asyncio

    for _ in range(40):
        await dispatcher.run_once()
        if receiver.of_type("heartbeat"):
            break
        await asyncio.sleep(0.1)
    beat = receiver.of_type("heartbeat")[0]
    assert _params(beat)["events-since-subscription-start"]["valueString"] == "0"


async def test_each_delivery_is_authorised_as_the_subscriber(api: httpx.AsyncClient, dispatcher: Dispatcher,
                                                             receiver: Receiver, notify_ctx: object) -> None:
    """A system client of the 0-19 service hears of notices addressed to its own organisation only."""
    from app.security.tokens import default_scope
    from tests.security.tokens_fixture import issuer_for

    token = issuer_for(notify_ctx).mint(  # type: ignore[arg-type]
        sub="epr-019", role="system", scope=default_scope("system"), ttl=600, org="Organization/zero-19")
    system = {"Authorization": f"Bearer {token}"}
    resp = await api.post("/fhir/Subscription", json=subscription(receiver.url), headers=system)
    assert resp.status_code == 201, resp.text
    await dispatcher.run_once()
    await receiver.wait_for(lambda: len(receiver.of_type("handshake")) == 1)
    ours = (await api.post("/fhir/Communication", json=notice("Organization/zero-19"))).json()
    await api.post("/fhir/Communication", json=notice("Organization/elsewhere"))
    await dispatcher.run_once()
    await receiver.wait_for(lambda: receiver.events() == [1])
    focus = {p["name"]: p for p in _params(receiver.of_type("event-notification")[0])["notification-event"]["part"]}
    assert focus["focus"]["valueReference"] == {"reference": f"{FHIR}/Communication/{ours['id']}"}
    import asyncio

    await asyncio.sleep(0.2)
    await dispatcher.run_once()
    assert receiver.events() == [1]

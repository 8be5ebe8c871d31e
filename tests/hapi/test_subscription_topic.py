"""HAPI's topic-based subscriptions in R4, the Subscriptions Backport way: the launcher imports
`SubscriptionTopicConfig` (without it HAPI accepts such a Subscription but never fires it), and this test
proves both halves on the real server (issue 7: "REST-hook and topic-based subscriptions enabled").

In R4, HAPI reads a topic from a `Basic` whose code is `fhir-types#SubscriptionTopic`, described with the
R5 (url, status) and R4B (resourceTrigger, canFilterBy) cross-version extensions, and treats a Subscription as
topic-based when it claims the Backport IG `backport-subscription` profile: `criteria` is then the topic's
canonical URL and `backport-filter-criteria` narrows it. HAPI delivers each notification Bundle by POSTing it
with its FHIR client, which retries any answer that is not FHIR (`NonFhirResponseException`, "Response
contains no Content-Type"), so the receiver here answers with an empty transaction-response Bundle.
https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.hapi.conformance import errors, summary, upload_backport, validate
from tests.hapi.ed_feed import eventually
from tests.hapi.parity import create
from tests.hapi.support import FHIR_JSON, HookReceiver

pytestmark = pytest.mark.hapi

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = BACKPORT + "backport-subscription-notification-r4"
TOPIC = "https://fhir.safeflag.example/SubscriptionTopic/hapi-sandbox-emergency-encounter"
R5_TOPIC = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
R4B_TOPIC = "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic."
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
REPLY = orjson.dumps({"resourceType": "Bundle", "type": "transaction-response"})
ACTIVATION_TIMEOUT_S = 120.0
REGISTRATION_TIMEOUT_S = 180.0  # HAPI loads topics (Basic) on its periodic cache refresh
PROBE_EVERY_S = 10.0
DELIVERY_TIMEOUT_S = 60.0


class FhirReplyReceiver(HookReceiver):
    """A HookReceiver that answers every request with an empty transaction-response Bundle."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def fhir_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(b"content-type", FHIR_JSON.encode()), (b"content-length", str(len(REPLY)).encode())]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                message = {**message, "body": REPLY}
            await send(message)

        await super().__call__(scope, receive, fhir_send)


@pytest.fixture
async def hook() -> AsyncIterator[FhirReplyReceiver]:
    async with FhirReplyReceiver() as receiver:
        yield receiver


def _topic() -> dict[str, Any]:
    """An R4 topic in HAPI's shape: emergency Encounters created, filterable by subject."""
    return {
        "resourceType": "Basic",
        "id": "hapi-sandbox-emergency-encounter",
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
        "extension": [
            {"url": R5_TOPIC + "url", "valueUri": TOPIC},
            {"url": R5_TOPIC + "status", "valueCode": "active"},
            {
                "url": R4B_TOPIC + "resourceTrigger",
                "extension": [
                    {"url": "resource", "valueUri": "Encounter"},
                    {"url": "supportedInteraction", "valueCode": "create"},
                    {"url": "queryCriteria", "extension": [{"url": "current", "valueString": "Encounter?class=EMER"}]},
                ],
            },
            {
                "url": R4B_TOPIC + "canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "Encounter"},
                    {"url": "filterParameter", "valueString": "subject"},
                ],
            },
        ],
    }


def _subscription(patient_id: str, endpoint: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "SafeFlag HAPI sandbox test: a topic-based (R4 Backport) subscription",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [
                {"url": BACKPORT + "backport-filter-criteria", "valueString": f"Encounter?subject=Patient/{patient_id}"}
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": FHIR_JSON,
            "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": "id-only"}]},
        },
    }


async def _encounter(hapi: httpx.AsyncClient, patient_id: str, act_code: str) -> str:
    encounter = {
        "resourceType": "Encounter",
        "status": "arrived",
        "class": {"system": ACT_CODE, "code": act_code},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    return str((await create(hapi, encounter))["id"])


def _focus(notification: dict[str, Any]) -> list[str]:
    """The focus references of a notification's events."""
    status = notification["entry"][0]["resource"]
    return [
        part["valueReference"]["reference"]
        for p in status["parameter"] if p["name"] == "notification-event"
        for part in p["part"] if part["name"] == "focus"
    ]


async def test_topic_based_backport_subscription_is_accepted_and_fires(
    hapi: httpx.AsyncClient, hook: FhirReplyReceiver
) -> None:
    assert (await hapi.put("/Basic/hapi-sandbox-emergency-encounter", json=_topic())).status_code in (200, 201)
    child = await create(hapi, {"resourceType": "Patient"})
    other = await create(hapi, {"resourceType": "Patient"})
    subscription = await create(hapi, _subscription(child["id"], hook.url))
    # HAPI recognises it as topic-based (matching strategy TOPIC) and activates it like any REST-hook
    assert {"system": "http://hapifhir.io/fhir/StructureDefinition/subscription-matching-strategy",
            "code": "TOPIC", "display": "SubscriptionTopic"} in subscription["meta"]["tag"]
    sub_path = f"/Subscription/{subscription['id']}"
    try:
        async def active() -> bool:
            return bool((await hapi.get(sub_path)).json()["status"] == "active")

        await eventually(active, ACTIVATION_TIMEOUT_S, "HAPI activating the topic-based subscription")
        probes: list[str] = []
        next_probe = 0.0

        async def probe_notified() -> bool:  # registration with the topic matcher is asynchronous
            nonlocal next_probe
            if time.monotonic() >= next_probe:
                probes.append(f"Encounter/{await _encounter(hapi, child['id'], 'EMER')}")
                next_probe = time.monotonic() + PROBE_EVERY_S
            return bool(hook.received)

        await eventually(probe_notified, REGISTRATION_TIMEOUT_S, "the first topic notification")
        ambulatory = f"Encounter/{await _encounter(hapi, child['id'], 'AMB')}"
        someone_else = f"Encounter/{await _encounter(hapi, other['id'], 'EMER')}"
        emergency = f"Encounter/{await _encounter(hapi, child['id'], 'EMER')}"

        async def notified() -> bool:
            return any(emergency in _focus(r.json) for r in hook.received)

        await eventually(notified, DELIVERY_TIMEOUT_S, "the notification of the emergency Encounter", every=0.1)
        await asyncio.sleep(3.0)  # a wrong notification (ambulatory, another patient) would follow within moments
    finally:
        await hapi.delete(sub_path)

    notifications = [r.json for r in hook.received]
    focus = [ref for n in notifications for ref in _focus(n)]
    assert ambulatory not in focus and someone_else not in focus
    assert focus.count(emergency) == 1  # answered as FHIR, so delivered once
    assert set(focus) <= {*probes, emergency}
    assert set(hook.methods) == {"POST"} and {r.path for r in hook.received} == {"/hook"}
    last = next(n for n in notifications if emergency in _focus(n))
    status = last["entry"][0]["resource"]
    assert (last["type"], status["meta"]["profile"]) == ("history", [STATUS_PROFILE])
    values = {p["name"]: next((v for k, v in p.items() if k.startswith("value")), None) for p in status["parameter"]}
    assert {k: values[k] for k in ("subscription", "topic", "status", "type")} == {
        "subscription": {"reference": f"Subscription/{subscription['id']}"},
        "topic": TOPIC,
        "status": "active",
        "type": "event-notification",
    }

    # HAPI's own notification against the Backport profile it claims for its status (docs/hapi-sandbox.md "Differences from
    # HAPI FHIR"): the timestamp is a date, fullUrls are relative (and the focus one version-specific) and
    # the history entries carry no response. SafeFlag's notifications pass the same check
    # (test_emitted_validation.py).
    await upload_backport(hapi)
    where = f"Bundle.entry[0].resource/*Parameters/{status['id']}*/.parameter[5].part[1].value.ofType(date)"
    core = "(defined in http://hl7.org/fhir/StructureDefinition/Bundle)"
    bdl8 = "bdl-8: 'fullUrl cannot be a version specific reference'"
    bdl3 = "bdl-3: 'entry.request mandatory for batch/transaction/history, otherwise prohibited'"
    bdl4 = "bdl-4: 'entry.response mandatory for batch-response/transaction-response/history, otherwise prohibited'"
    wrong_type = f"The Profile '{STATUS_PROFILE}|1.1.0' definition allows for the type instant but found type date"
    timestamp = status["parameter"][5]["part"][1]["valueDate"]
    assert sorted(summary(errors(await validate(hapi, last, NOTIFICATION_PROFILE)))) == sorted([
        ("error", where, wrong_type),
        ("error", where, f"Not a valid instant format: '{timestamp}'"),
        ("error", "Bundle.entry[1]", f"Constraint failed: {bdl8} {core}"),
        ("error", "Bundle", f"Constraint failed: {bdl3} {core}"),
        ("error", "Bundle", f"Constraint failed: {bdl4} {core}"),
        *[
            ("error", "Bundle.entry[0]", f"The fullUrl must be an absolute URL (not '{e['fullUrl']}')")
            for e in last["entry"]
        ],
    ])

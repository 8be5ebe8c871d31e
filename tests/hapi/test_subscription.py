"""HAPI's own R4 REST-hook subscriptions, delivering to a real HTTP server started by the test: the ED system
side of the ED-on-HAPI flow (issue 7). https://hl7.org/fhir/R4/subscription.html#2.46.7.1

HAPI >= 6.10 matches changes in batches on a ~5 s job (hapi-sandbox.md), so a delivery arrives seconds after
the write; the test measures and reports that delay. A subscription only matches once HAPI has registered it,
which happens asynchronously after it turns `active`, so the test first waits for a probe to come through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.hapi.ed_feed import eventually
from tests.hapi.parity import create
from tests.hapi.support import FHIR_JSON, HookReceiver, new_nhs_number, nhs_identifier

pytestmark = pytest.mark.hapi

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
TOKEN_HEADER = "Authorization: Bearer sandbox-test-token"
ACTIVATION_TIMEOUT_S = 120.0
REGISTRATION_TIMEOUT_S = 120.0
PROBE_EVERY_S = 10.0
DELIVERY_TIMEOUT_S = 60.0


@pytest.fixture
async def hook() -> AsyncIterator[HookReceiver]:
    async with HookReceiver() as receiver:
        yield receiver


def _encounter(patient_id: str, act_code: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "arrived",
        "class": {"system": ACT_CODE, "code": act_code},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": "2026-01-05T09:00:00Z"},
    }


async def test_rest_hook_subscription_puts_matching_encounters(
    hapi: httpx.AsyncClient, hook: HookReceiver, record_testsuite_property: Callable[[str, object], None]
) -> None:
    child = {"resourceType": "Patient", "identifier": [nhs_identifier(new_nhs_number())]}
    patient = await create(hapi, child)
    subscription = await create(hapi, {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "SafeFlag HAPI sandbox test: emergency attendances",
        "criteria": "Encounter?class=EMER",
        "channel": {
            "type": "rest-hook", "endpoint": hook.url, "payload": FHIR_JSON, "header": [TOKEN_HEADER]
        },
    })
    sub_path = f"/Subscription/{subscription['id']}"
    try:
        async def active() -> bool:
            return bool((await hapi.get(sub_path)).json()["status"] == "active")

        await eventually(active, ACTIVATION_TIMEOUT_S, "HAPI activating the requested subscription", every=0.5)

        # Probe until HAPI has registered the subscription with its matcher.
        probes: list[str] = []
        next_probe = 0.0

        async def probe_delivered() -> bool:
            nonlocal next_probe
            if time.monotonic() >= next_probe:
                probes.append((await create(hapi, _encounter(patient["id"], "EMER")))["id"])
                next_probe = time.monotonic() + PROBE_EVERY_S
            return any(r.path.rsplit("/", 1)[-1] in probes for r in hook.received)

        await eventually(probe_delivered, REGISTRATION_TIMEOUT_S, "first delivery of a probe Encounter", every=0.5)
        # Probes written before the registration are never delivered; one matched in the same batch as the
        # delivered probe arrives with it. Let those settle so none lands in the measured window.
        await asyncio.sleep(2.0)

        # The measured write, with a non-matching ambulatory Encounter written just before it.
        ambulatory = await create(hapi, _encounter(patient["id"], "AMB"))
        emergency = await create(hapi, _encounter(patient["id"], "EMER"))
        committed = time.time()
        target = f"/hook/Encounter/{emergency['id']}"

        async def delivered() -> bool:
            return any(r.path == target for r in hook.received)

        await eventually(delivered, DELIVERY_TIMEOUT_S, "delivery of the measured Encounter", every=0.02)
        arrival = next(r for r in hook.received if r.path == target)
        latency = arrival.at - committed
        # Both writes went into the same or consecutive matching batches; a wrong AMB delivery would
        # follow within moments, so wait a little before asserting it never came.
        await asyncio.sleep(3.0)
    finally:
        await hapi.delete(sub_path)

    record_testsuite_property("hapi_rest_hook_delivery_s", round(latency, 3))
    print(f"\nHAPI REST-hook delivery: {latency:.2f}s from commit to receipt")

    paths = [r.path for r in hook.received]
    assert f"/hook/Encounter/{ambulatory['id']}" not in paths
    assert paths.count(target) == 1
    assert set(paths) <= {f"/hook/Encounter/{i}" for i in [*probes, emergency["id"]]}
    # HAPI delivers a payload subscription as an update of the resource at the endpoint.
    assert set(hook.methods) == {"PUT"}
    assert arrival.headers["authorization"] == "Bearer sandbox-test-token"
    assert arrival.headers["content-type"] == "application/fhir+json; charset=UTF-8"
    stored = (await hapi.get(f"/Encounter/{emergency['id']}")).json()
    assert arrival.json == stored
    # Seconds, not milliseconds (5 s matching batches), and never the minute of a failed-delivery retry.
    assert 0.0 < latency < DELIVERY_TIMEOUT_S


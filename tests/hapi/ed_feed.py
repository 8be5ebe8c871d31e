"""The ED-system-on-HAPI flow of test_ed_on_hapi.py: the data on both servers, the two subscriptions, the
system token HAPI carries, and how arrivals are timed (SafeFlag's request log; the receiver's clock).
https://hl7.org/fhir/R4/subscription.html
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.e2e.server import TEST_CLOCK, RunningServer, safeflag_command
from tests.hapi.support import FHIR_JSON, nhs_identifier
from tests.support.receiver import Receiver

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CS = "https://fhir.safeflag.example/CodeSystem/"
SD = "https://fhir.safeflag.example/StructureDefinition/"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
HEALTH_VISITOR = {"coding": [{"system": CS + "care-team-role", "code": "health-visitor"}]}
# HAPI's own channel extension (ca.uhn.fhir.util.HapiExtensions): no meta.versionId, hence no If-Match
STRIP_VERSION_IDS = "http://hapifhir.io/fhir/StructureDefinition/subscription-resthook-strip-version-ids"
REGISTRATION_TIMEOUT_S = 120.0
PROBE_EVERY_S = 10.0


def system_token(srv: RunningServer, org: str) -> str:
    """What an integrator configures on HAPI: `safeflag token` for the ED system, Encounter writes only."""
    out = subprocess.run(
        [
            *safeflag_command(),
            "token",
            "--sub",
            "hapi-ed-system",
            "--role",
            "system",
            "--org",
            org,
            "--scope",
            "system/Encounter.cu",
            "--ttl",
            "3600",
        ],
        env=srv.env,
        cwd=srv.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


async def ok(response: Awaitable[httpx.Response], *statuses: int) -> dict[str, Any]:
    r = await response
    assert r.status_code in (statuses or (200, 201)), (
        f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    )
    body: dict[str, Any] = r.json() if r.content else {}
    return body


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(every)


def encounter(subject: dict[str, Any], ed: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "arrived",
        "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
        "subject": subject,
        "period": {"start": TEST_CLOCK.isoformat(timespec="seconds")},  # when SafeFlag's clock started
        "serviceProvider": {"reference": ed},
    }


def arrivals_at_safeflag(srv: RunningServer) -> dict[str, float]:
    """Encounter id -> epoch seconds at which HAPI's PUT reached SafeFlag (log ts minus its duration)."""
    out: dict[str, float] = {}
    for rec in srv.log_records():
        path = str(rec.get("path", ""))
        if (
            rec.get("method") == "PUT"
            and path.startswith("/fhir/Encounter/")
            and rec.get("status") in (200, 201)
        ):
            done = datetime.fromisoformat(str(rec["ts"])).timestamp()
            out.setdefault(path.rsplit("/", 1)[1], done - float(rec["duration_ms"]) / 1000)  # type: ignore[arg-type]
    return out


def notified(receiver: Receiver) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    """Encounter id -> (arrival, notice Communication) of each ed-attendance notification event received
    (one notification Bundle may carry several events: SafeFlag batches what is pending)."""
    out: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for r in receiver.of_type("event-notification"):
        bundle = r.json
        resources = {e["fullUrl"]: e.get("resource") for e in bundle["entry"][1:]}
        for event in bundle["entry"][0]["resource"]["parameter"]:
            if event["name"] != "notification-event":
                continue
            parts = [(p["name"], (p.get("valueReference") or {}).get("reference", "")) for p in event["part"]]
            focus = next(ref for name, ref in parts if name == "focus")
            for name, ref in parts:
                if name == "additional-context" and "/Encounter/" in ref:
                    out.setdefault(ref.rsplit("/", 1)[1], []).append((r.at, resources[focus]))
    return out


async def probe_until_registered(
    hapi: httpx.AsyncClient, sf: httpx.AsyncClient, child_id: str, ed: str
) -> list[str]:
    """HAPI registers an active subscription with its matcher asynchronously: create probe attendances
    until one reaches SafeFlag. Probes are real attendances of the same child (they notify too)."""
    probes: list[str] = []
    next_probe = 0.0

    async def delivered() -> bool:
        nonlocal next_probe
        if time.monotonic() >= next_probe:
            created = await ok(
                hapi.post(
                    "/Encounter",
                    json=encounter({"reference": f"Patient/{child_id}"}, ed),
                    headers={"Content-Type": FHIR_JSON},
                ),
                201,
            )
            probes.append(created["id"])
            next_probe = time.monotonic() + PROBE_EVERY_S
        for pid in probes:
            if (await sf.get(f"/Encounter/{pid}")).status_code == 200:
                return True
        return False

    await eventually(
        delivered, REGISTRATION_TIMEOUT_S, "HAPI delivering a probe attendance to SafeFlag", every=0.5
    )
    # probes matched in the same or the next 5 s batch land before the measured window
    await asyncio.sleep(6.0)
    return probes


async def notice_and_task(sf: httpx.AsyncClient, encounter_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = await ok(sf.get("/Communication", params={"encounter": f"Encounter/{encounter_id}"}))
    (comm,) = [e["resource"] for e in found.get("entry", []) if e["search"]["mode"] == "match"]
    tasks = await ok(sf.get("/Task", params={"focus": f"Communication/{comm['id']}"}))
    (task,) = [e["resource"] for e in tasks.get("entry", []) if e["search"]["mode"] == "match"]
    return comm, task


def content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[max(0, int(0.9 * len(ordered)) - 1)], 3),
        "max": round(ordered[-1], 3),
    }


def world(run: str, nhs: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(child, ED Organization, SafeFlag-only resources): the child under 5 with a CareTeam naming her health
    visitor (PractitionerRole hv-1 of the 0-19 service); child and ED get ids unique to the run."""
    child = {
        "resourceType": "Patient",
        "id": f"sf-child-{run}",
        "identifier": [nhs_identifier(nhs)],
        "name": [{"family": "Example", "given": ["Alex"]}],
        "birthDate": str(TEST_CLOCK.date() - timedelta(days=800)),
    }
    ed = {
        "resourceType": "Organization",
        "id": f"sf-ed-{run}",
        "name": "City Hospital ED",
        "type": [_role("emergency-department")],
    }
    team = [
        {
            "resourceType": "Organization",
            "id": "zero19",
            "name": "0-19 service",
            "type": [_role("zero-to-nineteen-service")],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "hv-1",
            "active": True,
            "organization": {"reference": "Organization/zero19"},
            "code": [HEALTH_VISITOR],
        },
        {
            "resourceType": "CareTeam",
            "id": "ct-1",
            "status": "active",
            "subject": {"reference": f"Patient/{child['id']}"},
            "participant": [{"role": [HEALTH_VISITOR], "member": {"reference": "PractitionerRole/hv-1"}}],
        },
    ]
    return child, ed, team


def _role(code: str) -> dict[str, Any]:
    return {"coding": [{"system": CS + "organization-role", "code": code}]}


def safeflag_subscription(endpoint: str) -> dict[str, Any]:
    """The health visitor's `ed-attendance` subscription on SafeFlag (full-resource notifications)."""
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "health visitor's ED notices",
        "criteria": "https://fhir.safeflag.example/SubscriptionTopic/ed-attendance",
        "_criteria": {
            "extension": [
                {
                    "url": BACKPORT + "backport-filter-criteria",
                    "valueString": "Communication?recipient=PractitionerRole/hv-1",
                }
            ]
        },
        "extension": [
            {"url": SD + "subscription-secret", "valueString": "ed-on-hapi-secret-0123456789abcdef"}
        ],
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": FHIR_JSON,
            "_payload": {
                "extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": "full-resource"}]
            },
        },
    }


def hapi_subscription(safeflag_base: str, token: str) -> dict[str, Any]:
    """The ED system's subscription on HAPI: every emergency Encounter PUT to SafeFlag with a system token."""
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "ED attendances to SafeFlag",
        "criteria": "Encounter?class=EMER",
        "channel": {
            "type": "rest-hook",
            "endpoint": safeflag_base,
            "payload": FHIR_JSON,
            "header": [f"Authorization: Bearer {token}"],
            # without it HAPI sends `If-Match: W/"1"`, which SafeFlag answers 412 for an id it does not
            # hold yet (HAPI itself ignores If-Match there; docs/hapi-sandbox.md "Differences from HAPI FHIR")
            "extension": [{"url": STRIP_VERSION_IDS, "valueBoolean": True}],
        },
    }

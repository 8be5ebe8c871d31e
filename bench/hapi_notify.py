"""ED attendance -> notification latency on HAPI FHIR (bench/hapi_compare.py): a criteria REST-hook
subscription `Encounter?class=EMER` on HAPI delivering to a real receiver (HAPI PUTs the matching Encounter
to `<endpoint>/Encounter/<id>`), attendances sent open loop at a fixed rate, and every event timed from the
start of its create request to the PUT's arrival; the count must match.
HAPI >= 6.10 matches in ~5 s batches (hapi-sandbox.md). https://hl7.org/fhir/R4/subscription.html
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from bench.procs import Server
from bench.workloads import nhs_numbers
from tests.support.receiver import Receiver

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
REGISTRATION_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 90.0


def percentiles(values_ms: list[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles, keyed as bench/notify_latency.py keys them ("p50", ...)."""
    ordered = sorted(values_ms)
    return (
        {f"p{q}": round(ordered[max(0, min(len(ordered), -(-q * len(ordered) // 100)) - 1)], 1) for q in qs}
        if ordered
        else {}
    )


async def hapi_notify_latency(hapi: Server, rate: float, seconds: float, children: int) -> dict[str, Any]:
    """ED attendances on HAPI -> its REST-hook PUT at a real receiver, for every event (open loop)."""
    receiver = Receiver()
    await receiver.start()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    fhir_json = {"Content-Type": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=hapi.base + "/fhir", timeout=60, limits=limits) as api:
        gate = asyncio.Semaphore(8)

        async def child(nhs: str) -> str:
            async with gate:
                body = {
                    "resourceType": "Patient",
                    "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}],
                }
                r = await api.post("/Patient", json=body, headers=fhir_json)
                r.raise_for_status()
                return str(r.json()["id"])

        # test-range numbers after the ones the throughput seed uses
        pids = await asyncio.gather(*(child(n) for n in nhs_numbers(900_000 - children, children)))

        def encounter(i: int) -> dict[str, Any]:
            return {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": ACT_CODE, "code": "EMER"},
                "subject": {"reference": f"Patient/{pids[i % len(pids)]}"},
                "period": {"start": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
            }

        sub = await api.post(
            "/Subscription",
            headers=fhir_json,
            json={
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "bench",
                "criteria": "Encounter?class=EMER",
                "channel": {
                    "type": "rest-hook",
                    "endpoint": receiver.url,
                    "payload": "application/fhir+json",
                },
            },
        )
        sub.raise_for_status()
        sub_path = f"/Subscription/{sub.json()['id']}"
        try:
            await _registered(api, receiver, sub_path, encounter)
            received_before = len(receiver.received)
            started: dict[str, float] = {}
            request_ms: list[float] = []
            errors = 0

            async def one(i: int) -> None:
                nonlocal errors
                t0 = time.time()
                try:
                    r = await api.post(
                        "/Encounter", json=encounter(i), headers={**fhir_json, "Prefer": "return=minimal"}
                    )
                except httpx.HTTPError:
                    errors += 1
                    return
                request_ms.append((time.time() - t0) * 1000)
                if r.status_code != 201:
                    errors += 1
                    return
                started[r.headers["location"].split("/Encounter/")[1].split("/")[0]] = t0

            loop = asyncio.get_running_loop()
            begin, tasks = loop.time(), []
            cpu0 = hapi.cpu_seconds()
            for i in range(int(rate * seconds)):
                delay = begin + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
            deadline = time.time() + DRAIN_TIMEOUT_S
            while set(started) - _arrivals(receiver, received_before).keys() and time.time() < deadline:
                await asyncio.sleep(0.1)
            cpu = hapi.cpu_seconds() - cpu0
        finally:
            await api.delete(sub_path)
            await receiver.stop()
    got = _arrivals(receiver, received_before)
    latencies = [(min(got[e]) - t0) * 1000 for e, t0 in started.items() if e in got]
    result = {
        "server": "HAPI",
        "rate_per_s": rate,
        "seconds": seconds,
        "children": children,
        "attendances_sent": int(rate * seconds),
        "attendances_created": len(started),
        "request_errors": errors,
        "notifications_received": len(set(got) & set(started)),
        "duplicates": sum(len(v) - 1 for e, v in got.items() if e in started),
        "lost": len(set(started) - set(got)),
        "latency_ms": percentiles(latencies),
        "latency_max_ms": round(max(latencies), 1) if latencies else None,
        "request_ms": percentiles(request_ms, (50, 99)),
        "server_cpu_ms_per_attendance": round(cpu * 1000 / max(1, len(started)), 2),
    }
    result["count_check"] = "ok" if result["lost"] == 0 and errors == 0 else "MISMATCH"
    return result


def _arrivals(receiver: Receiver, skip: int) -> dict[str, list[float]]:
    """Encounter id -> arrival times of HAPI's `PUT <endpoint>/Encounter/<id>`, after the first `skip`."""
    out: dict[str, list[float]] = {}
    for r in receiver.received[skip:]:
        if "/Encounter/" in r.path:
            out.setdefault(r.path.rsplit("/", 1)[1], []).append(r.at)
    return out


async def _registered(api: httpx.AsyncClient, receiver: Receiver, sub_path: str, encounter: Any) -> None:
    """HAPI activates and registers a subscription asynchronously: probe until one attendance comes through,
    then let probes of the same 5 s matching batch land before the measured window."""
    deadline = time.time() + REGISTRATION_TIMEOUT_S
    probes: list[str] = []
    next_probe = 0.0
    while not any(r.path.rsplit("/", 1)[-1] in probes for r in receiver.received):
        if time.time() > deadline:
            raise RuntimeError(
                f"HAPI never delivered a probe for {sub_path} within {REGISTRATION_TIMEOUT_S}s"
            )
        if time.time() >= next_probe and (await api.get(sub_path)).json().get("status") == "active":
            r = await api.post(
                "/Encounter", json=encounter(len(probes)), headers={"Content-Type": "application/fhir+json"}
            )
            probes.append(str(r.json()["id"]))
            next_probe = time.time() + 10
        await asyncio.sleep(0.2)
    await asyncio.sleep(6.0)

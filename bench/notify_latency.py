"""Notification latency (docs/benchmarks.md, "Notification latency"): from the start of an ED
attendance request to the arrival of its notification at a real rest-hook subscriber, for EVERY event.

A real `safeflag serve` (in-process dispatcher, as `make run` serves it) on SQLite or a throwaway
PostgreSQL cluster; this process is the load generator AND the receiving HTTP server (one clock for
both ends). Seeded: an ED, a 0-19 team with a health visitor, N children under 5 each with a CareTeam
(so every attendance takes the full routing path), and one `ed-attendance` subscription (id-only).
Load: open loop at `--rate` attendances/s for `--seconds` (requests are launched on schedule, never
waiting for earlier ones), or with `--sequential N`: N attendances one after another, each posted when
the previous one's 201 is back (the case where a lost wake-up showed as a poll interval). Half name
the child by reference, half by NHS number only. Each notification carries the Encounter as
additional context, which ties it to its request.
Targets: p50 <= 50 ms, p99 <= 250 ms at 50/s; p99 <= 100 ms sequential; both databases, every notice
counted. Results: bench/results/<date>-notify-<db>-<rate>per-s-w<workers>.json (`-seq<N>-` sequential)

    python -m bench.notify_latency                      # both databases, 50/s for 60 s
    python -m bench.notify_latency --db sqlite --seconds 10
    python -m bench.notify_latency --sequential 50      # both databases, 50 attendances one by one
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.procs import ROOT, Server, free_port, machine_busy_seconds, machine_info
from bench.workloads import nhs_numbers
from tests.support.postgres import PgCluster, start_cluster
from tests.support.receiver import Receiver

RESULTS = ROOT / "bench" / "results"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
CS = "https://fhir.safeflag.example/CodeSystem/"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
DRAIN_TIMEOUT_S = 60.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def server(db_url: str, work: Path, workers: int, hook_port: int, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    return Server(
        "safeflag",  # with its in-process dispatcher (one per worker), as `make run` serves it
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)],
        {
            "SAFEFLAG_DATA_DIR": str(work),
            "SAFEFLAG_DATABASE_URL": db_url,
            "SAFEFLAG_BASE_URL": f"http://127.0.0.1:{port}",
            "SAFEFLAG_LOG_LEVEL": "WARNING",
            "SAFEFLAG_RATE_LIMIT_PER_SECOND": "0",
            "SAFEFLAG_WEBHOOK_ALLOW": f"127.0.0.1:{hook_port}",  # the receiver's exact port
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        },
        port,
        work / "safeflag-server.log",
    )


def admin_token(srv: Server) -> str:
    from app.config import Settings
    from app.security.cli import mint_token

    settings = Settings(data_dir=Path(srv.env["SAFEFLAG_DATA_DIR"]), base_url=srv.base, _env_file=None)  # type: ignore[call-arg]
    return mint_token(settings, sub="bench", role="admin", ttl=3600)


async def seed(api: httpx.AsyncClient, children: int, receiver: Receiver) -> list[str]:
    async def put(rtype: str, rid: str, body: dict[str, Any]) -> None:
        resp = await api.put(f"/fhir/{rtype}/{rid}", json={"resourceType": rtype, "id": rid, **body})
        resp.raise_for_status()

    await put(
        "Organization",
        "ed",
        {
            "name": "City ED",
            "type": [{"coding": [{"system": CS + "organization-role", "code": "emergency-department"}]}],
        },
    )
    await put(
        "Organization",
        "zero19",
        {
            "name": "0-19 service",
            "type": [{"coding": [{"system": CS + "organization-role", "code": "zero-to-nineteen-service"}]}],
        },
    )
    await put("Practitioner", "hv", {"name": [{"family": "Visitor"}]})
    await put(
        "PractitionerRole",
        "hv-1",
        {
            "practitioner": {"reference": "Practitioner/hv"},
            "organization": {"reference": "Organization/zero19"},
            "code": [{"coding": [{"system": CS + "care-team-role", "code": "health-visitor"}]}],
        },
    )
    numbers = nhs_numbers(0, children)
    birth = (date.today() - timedelta(days=700)).isoformat()
    gate = asyncio.Semaphore(8)

    async def child(i: int, nhs: str) -> None:
        async with gate:
            await put("Patient", f"c{i}", {"identifier": [{"system": NHS, "value": nhs}], "birthDate": birth})
            await put(
                "CareTeam",
                f"ct{i}",
                {
                    "status": "active",
                    "subject": {"reference": f"Patient/c{i}"},
                    "participant": [
                        {
                            "role": [
                                {"coding": [{"system": CS + "care-team-role", "code": "health-visitor"}]}
                            ],
                            "member": {"reference": "PractitionerRole/hv-1"},
                        }
                    ],
                },
            )

    await asyncio.gather(*(child(i, nhs) for i, nhs in enumerate(numbers)))
    sub = await api.post(
        "/fhir/Subscription",
        json={
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "bench",
            "criteria": "https://fhir.safeflag.example/SubscriptionTopic/ed-attendance",
            "extension": [
                {
                    "url": "https://fhir.safeflag.example/StructureDefinition/subscription-secret",
                    "valueString": "b" * 40,
                }
            ],
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
        },
    )
    sub.raise_for_status()
    deadline = time.time() + 30
    while not receiver.of_type("handshake"):
        if time.time() > deadline:
            raise RuntimeError("no handshake from the server")
        await asyncio.sleep(0.05)
    return numbers


def arrivals(receiver: Receiver) -> dict[str, list[float]]:
    """Encounter id -> arrival time(s) of its notification (wall clock)."""
    out: dict[str, list[float]] = {}
    for r in receiver.received:
        for p in r.json["entry"][0]["resource"]["parameter"]:
            if p["name"] != "notification-event":
                continue
            for part in p["part"]:
                ref = (part.get("valueReference") or {}).get("reference", "")
                if part["name"] == "additional-context" and "/Encounter/" in ref:
                    out.setdefault(ref.rsplit("/", 1)[1], []).append(r.at)
    return out


async def load(
    api: httpx.AsyncClient, numbers: list[str], rate: float, seconds: float, sequential: int = 0
) -> tuple[dict[str, float], dict[str, float], list[float], int]:
    """Open-loop attendances (or `sequential` ones, each after the previous answer); returns
    Encounter id -> request start, Encounter id -> answer, request latencies, errors."""
    started: dict[str, float] = {}
    answered: dict[str, float] = {}  # Encounter id -> when its 201 came back (the commit is before it)
    request_ms: list[float] = []
    errors = 0
    tasks = []
    today = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def one(i: int) -> None:
        nonlocal errors
        subject = (
            {"reference": f"Patient/c{i % len(numbers)}"}
            if i % 2
            else {"identifier": {"system": NHS, "value": numbers[i % len(numbers)]}, "type": "Patient"}
        )
        body = {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
            "subject": subject,
            "period": {"start": today},
            "serviceProvider": {"reference": "Organization/ed"},
        }
        t0 = time.time()
        try:
            resp = await api.post("/fhir/Encounter", json=body, headers={"Prefer": "return=minimal"})
        except httpx.HTTPError:
            errors += 1
            return
        request_ms.append((time.time() - t0) * 1000)
        if resp.status_code != 201:
            errors += 1
            return
        eid = resp.headers["location"].split("/Encounter/")[1].split("/")[0]
        started[eid], answered[eid] = t0, time.time()

    if sequential:
        for i in range(sequential):
            await one(i)
        return started, answered, request_ms, errors
    loop = asyncio.get_running_loop()
    begin = loop.time()
    total = int(rate * seconds)
    for i in range(total):
        delay = begin + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return started, answered, request_ms, errors


async def run_db(db: str, args: argparse.Namespace, cluster: PgCluster | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"safeflag-notify-bench-{db}-"))
    if db == "pg":
        assert cluster is not None
        cluster.psql("DROP DATABASE IF EXISTS bench_notify")
        cluster.psql("CREATE DATABASE bench_notify")
        url = cluster.url("bench_notify")
    else:
        url = f"sqlite+aiosqlite:///{work / 'safeflag.db'}"
    receiver = Receiver()
    await receiver.start()
    env = dict(getattr(args, "env", None) or {})
    if getattr(args, "trace", False):
        env["SAFEFLAG_NOTIFY_TRACE_DIR"] = str(work / "trace")
    srv = server(url, work, args.workers, receiver.port, env)
    try:
        srv.start()
        headers = {"Authorization": f"Bearer {admin_token(srv)}"}
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=srv.base, headers=headers, timeout=30, limits=limits) as api:
            numbers = await seed(api, args.children, receiver)
            cpu0, busy0, wall0 = srv.cpu_seconds(), machine_busy_seconds(), time.time()
            started, answered, request_ms, errors = await load(api, numbers, args.rate, args.seconds,
                                                               args.sequential)
            deadline = time.time() + DRAIN_TIMEOUT_S
            while len(set(arrivals(receiver)) & set(started)) < len(started) and time.time() < deadline:
                await asyncio.sleep(0.1)
            cpu, elapsed = srv.cpu_seconds() - cpu0, time.time() - wall0
            busy = machine_busy_seconds() - busy0
        got = arrivals(receiver)
        latencies = [(min(got[eid]) - t0) * 1000 for eid, t0 in started.items() if eid in got]
        dupes = sum(len(v) - 1 for v in got.values())
        result = {
            "database": "PostgreSQL" if db == "pg" else "SQLite",
            "load": f"{args.sequential} sequential" if args.sequential else f"{args.rate:g}/s x {args.seconds:g} s",
            "rate_per_s": None if args.sequential else args.rate,
            "seconds": None if args.sequential else args.seconds,
            "children": args.children,
            "workers": args.workers,
            "attendances_sent": args.sequential or int(args.rate * args.seconds),
            "attendances_created": len(started),
            "request_errors": errors,
            "notifications_received": len(set(got) & set(started)),
            "duplicates": dupes,
            "lost": len(set(started) - set(got)),
            "latency_ms": {q: round(percentile(latencies, float(q[1:])), 1) for q in ("p50", "p95", "p99")}
            if latencies
            else {},
            "latency_max_ms": round(max(latencies), 1) if latencies else None,
            # p50 per 10 s of sending: a rising series means delivery fell behind the load
            "latency_p50_ms_by_10s": _by_window(started, got),
            "request_ms": {q: round(percentile(request_ms, float(q[1:])), 1) for q in ("p50", "p99")}
            if request_ms
            else {},
            "server_cpu_ms_per_attendance": round(cpu * 1000 / max(1, len(started)), 2),
            # how busy the 2 shared cores were, and how much of that was the server (PostgreSQL not included)
            "machine_busy_cores": round(busy / elapsed, 2), "server_cores": round(cpu / elapsed, 2),
            "targets": {"p99_ms": 100} if args.sequential else {"p50_ms": 50, "p99_ms": 250},
            "settings": getattr(args, "env", None) or {},
        }
        result["count_check"] = "ok" if result["lost"] == 0 and errors == 0 else "MISMATCH"
        if getattr(args, "trace", False):
            from bench.notify_trace import stages

            result["stages"] = stages(work / "trace", started, answered, got)
        return result
    finally:
        srv.stop()
        await receiver.stop()
        shutil.rmtree(work, ignore_errors=True)


def _by_window(started: dict[str, float], got: dict[str, list[float]], window: float = 10.0) -> list[float]:
    if not started:
        return []
    first = min(started.values())
    buckets: dict[int, list[float]] = {}
    for eid, t0 in started.items():
        if eid in got:
            buckets.setdefault(int((t0 - first) // window), []).append((min(got[eid]) - t0) * 1000)
    return [round(percentile(buckets[k], 50), 1) for k in sorted(buckets)]


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("| database | load, workers | attendances sent/created/notified | lost / dup | p50 ms | p95 ms "
         "| p99 ms | max ms | request p50/p99 ms | server CPU ms/attendance | machine busy cores |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat, req = r["latency_ms"], r["request_ms"]
        rows.append(
            f"| {r['database']} | {r['load']}, {r['workers']} | "
            f"{r['attendances_sent']}/{r['attendances_created']}/{r['notifications_received']} | "
            f"{r['lost']} / {r['duplicates']} | {lat.get('p50')} | {lat.get('p95')} | {lat.get('p99')} | "
            f"{r['latency_max_ms']} | {req.get('p50')}/{req.get('p99')} | {r['server_cpu_ms_per_attendance']} | "
            f"{r['machine_busy_cores']} |"
        )
    return "\n".join(rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("pg", "sqlite", "both"), default="both")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--children", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, each with a dispatcher")
    parser.add_argument("--trace", action="store_true",
                        help="time each notice's stages in the server (bench/notify_trace.py)")
    parser.add_argument("--sequential", type=int, default=0, metavar="N",
                        help="N attendances one after another instead of the open-loop rate")
    args = parser.parse_args()
    dbs = ["pg", "sqlite"] if args.db == "both" else [args.db]
    cluster = start_cluster() if "pg" in dbs else None
    results = []
    try:
        info = machine_info(cluster.bindir if cluster else None)
        for db in dbs:
            result = await run_db(db, args, cluster)
            results.append(result)
            RESULTS.mkdir(parents=True, exist_ok=True)
            load_name = f"seq{args.sequential}" if args.sequential else f"{args.rate:g}per-s"
            out = RESULTS / f"{datetime.now(UTC):%Y-%m-%d}-notify-{db}-{load_name}-w{args.workers}.json"
            out.write_text(json.dumps({"machine": info, "result": result}, indent=2) + "\n")
            print(json.dumps(result, indent=2), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    print(table(results))


if __name__ == "__main__":
    asyncio.run(main())

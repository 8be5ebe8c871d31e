"""SafeFlag against HAPI FHIR JPA 8.8.0 on the same machine, in the same run (docs/benchmarks.md).

For each database pair (SafeFlag on SQLite with HAPI on in-memory H2, and both on one throwaway PostgreSQL
cluster) it starts `safeflag serve` and the HAPI launcher of tests/hapi (the real HAPI JPA server, no Docker),
seeds both with the same data over their HTTP APIs (bench/seed.py: Organizations, test-range Patients, 1-3
active Flags each; HAPI first gets fhir_profiles/ so that `Flag?status=` exists there), then runs the same
workloads against each with the same load generator (bench/loadgen.py, a separate process), alternating
which server goes first in each round:

- create Flag (a fresh patient/category/author triple each: valid on both, HAPI's references exist);
- read Flag;
- CP-IS check: active Flags by NHS number with `_include=Flag:author`, in the chained form
  `patient.identifier=` both servers understand (SafeFlag's `patient:identifier=` form is reported beside it);
- ED attendance -> notification at a real receiver, every event timed, open loop at `--rate`: SafeFlag with
  its own `ed-attendance` subscription (bench/notify_latency.py: notice created, routed, delivered), HAPI with
  a criteria REST-hook subscription `Encounter?class=EMER` that PUTs the Encounter to the receiver.

Reported: throughput, p50/p95/p99, server (+ database) CPU per request, and SafeFlag/HAPI ratios. Results:
bench/results/<UTC date>-hapi-compare-<db>.json and a markdown table (docs/benchmarks.md "Compared with HAPI FHIR").

Then, with the servers stopped, the rest of README's comparison table in the same run and JSON: CPU per
create of SafeFlag against the floor (bench/floor.py, `--floor-requests`; with PostgreSQL on both kinds of
database), and on PostgreSQL the AuditEvent search by patient over a trail of `--audit-rows` rows
(bench/audit_search.py). 0 leaves either out.

    python -m bench.hapi_compare                 # both pairs, 15 s per workload, 2 rounds
    python -m bench.hapi_compare --db h2 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import audit_search, floor, notify_latency
from bench.hapi_notify import hapi_notify_latency
from bench.procs import ROOT, Server, free_port, machine_info, safeflag_server
from bench.report import GENERATOR_BOUND
from bench.run import Bench, mint_token
from bench.seed import Seeder, Sizes, search_flags
from bench.workloads import nhs_numbers, organization_body, patient_body
from tests.hapi.conformance import search_parameters_ready, upload_profiles
from tests.hapi.sandbox import JAR, JAVA_OPTS, build_jar
from tests.support.postgres import PgCluster, start_cluster

RESULTS = ROOT / "bench" / "results"
WORKLOADS = ("create", "read", "search")
CHAIN, MODIFIER = "patient.identifier", "patient:identifier"
HAPI_READY_S = 300.0  # 45-120 s on 2 cores (hapi-sandbox.md)


def hapi_server(port: int, work: Path, jdbc: str | None) -> Server:
    argv = ["java", *JAVA_OPTS, "-jar", str(JAR), f"--server.port={port}", "--server.address=127.0.0.1"]
    if jdbc:  # the launcher picks HAPI's PostgreSQL dialect from the URL (tests/hapi/README.md)
        argv += [
            f"--spring.datasource.url={jdbc}",
            "--spring.datasource.username=postgres",
            "--spring.datasource.password=",
        ]
    return Server("hapi", argv, {}, port, work / "hapi.log")


async def seed(base: str, token: str | None, sizes: Sizes) -> dict[str, Any]:
    """The same reference data and flags as bench/seed.py, on one server; the loadgen seed description."""
    seeder = Seeder(base, token)
    try:
        orgs = await seeder.create_all(
            [organization_body(i) for i in range(sizes.seed_orgs + sizes.create_orgs)]
        )
        numbers = nhs_numbers(0, sizes.search_patients + sizes.create_patients)
        pids = await seeder.create_all([patient_body(n, i) for i, n in enumerate(numbers)])
        patients = list(zip(pids, numbers, strict=True))
        searched, created = patients[: sizes.search_patients], patients[sizes.search_patients :]
        flag_ids = await seeder.create_all(search_flags(searched, orgs[: sizes.seed_orgs]))
    finally:
        await seeder.close()
    return {
        "base": base,
        "flag_ids": flag_ids,
        "require_include": True,
        "cpis_param": CHAIN,
        "search": [[nhs, 1 + i % 3] for i, (_pid, nhs) in enumerate(searched)],
        "create_patients": created,
        "create_orgs": orgs[sizes.seed_orgs :],
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds per (workload, target) and SafeFlag/HAPI ratios (throughput; CPU per request)."""
    fields = (
        "throughput",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "cpu_ms_per_req",
        "generator_ms_per_req",
        "errors",
        "other_load_cores",
    )
    out = []
    for workload in sorted(
        {r["workload"] for r in rows}, key=lambda w: (w.split(" ")[0] not in WORKLOADS, w)
    ):
        med = {}
        for target in sorted({r["target"] for r in rows if r["workload"] == workload}):
            picked = [r for r in rows if (r["workload"], r["target"]) == (workload, target)]
            med[target] = {
                f: round(statistics.median([r[f] for r in picked if r.get(f) is not None] or [0]), 2)
                for f in fields
            }
        sf, hapi = med.get("safeflag"), med.get("hapi")
        ratio = (
            round(sf["throughput"] / hapi["throughput"], 2) if sf and hapi and hapi["throughput"] else None
        )
        cpu = (
            round(hapi["cpu_ms_per_req"] / sf["cpu_ms_per_req"], 2)
            if sf and hapi and sf["cpu_ms_per_req"]
            else None
        )
        out.append({"workload": workload, **med, "ratio": ratio, "cpu_ratio": cpu})
    return out


def table(db: str, summary: list[dict[str, Any]], notify: dict[str, dict[str, Any]], workers: int = 1) -> str:
    label = {"sqlite": "SQLite / H2", "pg": "PostgreSQL / PostgreSQL"}[db]
    lines = [
        f"{label} (SafeFlag / HAPI; SafeFlag worker processes: {workers})",
        "",
        (
            "| workload | SafeFlag req/s | HAPI req/s | SafeFlag / HAPI | SafeFlag p50/p95/p99 ms "
            "| HAPI p50/p95/p99 ms | CPU ms/req SafeFlag / HAPI |"
        ),
        "|---|---|---|---|---|---|---|",
    ]

    def lat(m: dict[str, Any] | None) -> str:
        return "-" if not m else f"{m['p50_ms']} / {m['p95_ms']} / {m['p99_ms']}"

    def rate(m: dict[str, Any] | None) -> str:
        """req/s, marked when the Python generator's CPU per request rivals the server's (bench/report.py)."""
        if not m:
            return "-"
        bound = m["cpu_ms_per_req"] and m["generator_ms_per_req"] / m["cpu_ms_per_req"] > GENERATOR_BOUND
        return f"{m['throughput']}{' (generator-bound)' if bound else ''}"

    for s in summary:
        sf, hapi = s.get("safeflag"), s.get("hapi")
        lines.append(
            f"| {s['workload']} | {rate(sf)} | {rate(hapi)} | "
            f"{s['ratio'] or '-'} | {lat(sf)} | {lat(hapi)} | "
            f"{sf['cpu_ms_per_req'] if sf else '-'} / {hapi['cpu_ms_per_req'] if hapi else '-'} |"
        )
    n_sf, n_hapi = notify.get("safeflag"), notify.get("hapi")
    if n_sf and n_hapi:
        lines.append("")
        lines.append(
            "| ED attendance -> notification | sent / notified (lost) | p50 ms | p95 ms | p99 ms | max ms |"
        )
        lines.append("|---|---|---|---|---|---|")
        for name, n in (
            ("SafeFlag (notice routed and delivered)", n_sf),
            ("HAPI (REST-hook PUT of the Encounter)", n_hapi),
        ):
            lat_ms = n["latency_ms"]
            lines.append(
                f"| {name} | {n['attendances_sent']} / {n['notifications_received']} ({n['lost']}) | "
                f"{lat_ms.get('p50')} | {lat_ms.get('p95')} | {lat_ms.get('p99')} | {n['latency_max_ms']} |"
            )
    return "\n".join(lines)


async def run_pair(db: str, args: argparse.Namespace, cluster: PgCluster | None) -> dict[str, Any]:
    """One database pair: both servers up side by side, the same workloads on each, order alternating."""
    work = Path(tempfile.mkdtemp(prefix=f"safeflag-hapi-compare-{db}-"))
    sizes = Sizes(search_patients=50, create_patients=300) if args.quick else Sizes(create_patients=600)
    if db == "pg":
        assert cluster is not None
        for name in ("bench_safeflag", "bench_hapi"):
            cluster.psql(f"DROP DATABASE IF EXISTS {name}")
            cluster.psql(f"CREATE DATABASE {name}")
        sf_url, jdbc = cluster.url("bench_safeflag"), f"jdbc:postgresql://127.0.0.1:{cluster.port}/bench_hapi"
        pg_pid: int | None = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    else:
        sf_url, jdbc, pg_pid = f"sqlite+aiosqlite:///{work}/safeflag.db", None, None
    # SQLite has one writer, so SafeFlag runs one process there; on PostgreSQL `--workers` (default 2 on a
    # 2-core machine) compares at equal cores with HAPI's JVM, which uses every core by default
    workers = args.workers if db == "pg" else 1
    sf = safeflag_server(free_port(), workers, work, sf_url)
    hapi = hapi_server(free_port(), work, jdbc)
    startup: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    notify: dict[str, dict[str, Any]] = {}
    try:
        startup["safeflag_start_s"] = round(sf.start(), 2)
        startup["safeflag_start_cpu_s"] = round(sf.cpu_seconds(), 2)  # the process tree's, to ready: steadier
        startup["safeflag_rss_mb"] = sf.rss_mb()
        print(f"[{db}] SafeFlag ready in {startup['safeflag_start_s']} s; starting HAPI ...", flush=True)
        startup["hapi_start_s"] = round(hapi.start("/fhir/metadata", HAPI_READY_S), 1)
        startup["hapi_rss_mb"] = hapi.rss_mb()
        print(f"[{db}] HAPI ready in {startup['hapi_start_s']} s ({startup['hapi_rss_mb']} MB)", flush=True)
        async with httpx.AsyncClient(base_url=hapi.base + "/fhir", timeout=120) as http:
            await upload_profiles(http)
            await search_parameters_ready(http)
        token = mint_token(sf.env)
        t0 = time.perf_counter()
        seeds = {"safeflag": await seed(sf.base, token, sizes), "hapi": await seed(hapi.base, None, sizes)}
        startup["seed_s"] = round(time.perf_counter() - t0, 1)
        if cluster is not None and db == "pg":
            # planner statistics of the seeded tables for both servers, as autovacuum keeps them on a live
            # server (bench/run.py); without them SafeFlag's duplicate-flag check scanned every Flag's
            # subject row until autovacuum first ran
            for name in ("bench_safeflag", "bench_hapi"):
                cluster.psql_in(name, "ANALYZE")
        files = {}
        for name, s in seeds.items():
            files[name] = work / f"seed-{name}.json"
            files[name].write_text(json.dumps(s))
        files["modifier"] = work / "seed-safeflag-modifier.json"
        files["modifier"].write_text(json.dumps({**seeds["safeflag"], "cpis_param": MODIFIER}))
        benches = {"safeflag": Bench(args, work, token, pg_pid), "hapi": Bench(args, work, None, pg_pid)}
        servers = {"safeflag": sf, "hapi": hapi}
        for workload in WORKLOADS:
            for rnd in range(args.rounds):
                order = ["safeflag", "hapi"] if rnd % 2 == 0 else ["hapi", "safeflag"]
                for name in order:
                    row = benches[name].measure(servers[name], files[name], seeds[name], workload, "python")
                    rows.append(
                        {
                            "db": db,
                            "round": rnd,
                            **row,
                            "target": name,
                            "workload": "search (patient.identifier)" if workload == "search" else workload,
                        }
                    )
            if workload == "search":  # SafeFlag's own CP-IS form: HAPI 8.8 refuses `:identifier` (HAPI-2498)
                row = benches["safeflag"].measure(
                    sf, files["modifier"], seeds["safeflag"], "search", "python"
                )
                rows.append(
                    {
                        "db": db,
                        "round": 0,
                        **row,
                        "target": "safeflag",
                        "workload": "search (patient:identifier)",
                    }
                )
        print(f"[{db}] notification latency: HAPI ...", flush=True)
        notify["hapi"] = await hapi_notify_latency(hapi, args.rate, args.notify_seconds, args.children)
    finally:
        sf.stop()
        hapi.stop()
    print(f"[{db}] notification latency: SafeFlag ...", flush=True)
    nargs = argparse.Namespace(
        rate=args.rate, seconds=args.notify_seconds, children=args.children, workers=workers, sequential=0
    )
    notify["safeflag"] = await notify_latency.run_db(db, nargs, cluster)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "db": db,
        "workers": workers,
        "startup": startup,
        "rows": rows,
        "notify": notify,
        "sizes": sizes.__dict__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="SafeFlag vs HAPI FHIR JPA (see the module docstring)")
    p.add_argument(
        "--db",
        choices=("h2", "pg", "both"),
        default="both",
        help="h2: SafeFlag on SQLite, HAPI on in-memory H2; pg: both on one PostgreSQL",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="SafeFlag worker processes on PostgreSQL (default: the machine's cores, as HAPI's JVM uses); SQLite: 1",
    )
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per workload and round")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--rate", type=float, default=20.0, help="ED attendances per second (open loop)")
    p.add_argument("--notify-seconds", type=float, default=15.0)
    p.add_argument("--children", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="5 s runs, 1 s warm-up, one round, a smaller seed")
    p.add_argument("--keep", action="store_true", help="keep the temp data dirs and server logs")
    p.add_argument("--floor-requests", type=int, default=2000, help="creates per app in bench.floor (0: none)")
    p.add_argument("--audit-rows", type=int, default=1_000_000,
                   help="audit rows for the AuditEvent search on PostgreSQL (0: none)")
    p.add_argument("--report", nargs="+", metavar="JSON", help="only print the tables of these result files")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.notify_seconds = (
            5.0,
            1.0,
            1,
            min(args.notify_seconds, 5.0),
        )
        args.floor_requests, args.audit_rows = min(args.floor_requests, 400), min(args.audit_rows, 20_000)
    return args


async def beside(db: str, args: argparse.Namespace, cluster: PgCluster | None) -> dict[str, Any]:
    """The figures of the comparison table that need no HAPI: SafeFlag / floor, the AuditEvent search."""
    out: dict[str, Any] = {}
    for kind in (("sqlite", "pg") if db == "pg" else ("sqlite",)) if args.floor_requests else ():
        cpu = await floor.main(args.floor_requests, kind)  # both kinds with PostgreSQL: README states both
        out[f"floor_{kind}"] = {**{f"{k}_cpu_ms": round(v, 3) for k, v in cpu.items()},
                                "safeflag_over_floor": round(cpu["floor"] / cpu["safeflag"], 2)}
    if args.audit_rows and db == "pg" and cluster is not None:
        name = f"audit_bench_{datetime.now(UTC):%H%M%S}"
        cluster.psql(f"CREATE DATABASE {name}")
        searches = argparse.Namespace(rows=args.audit_rows, patients=max(1, args.audit_rows // 50),
                                      searches=500 if args.audit_rows >= 100_000 else 100, no_freeze=False)
        out["audit_search"] = {"rows": args.audit_rows, **await audit_search.measure(
            "PostgreSQL", cluster.url(name), Path(tempfile.mkdtemp(prefix="safeflag-audit-bench-")), searches)}
    return out


def report(paths: list[str]) -> None:
    """Print the tables of earlier result files again (`--report bench/results/...json`)."""
    for path in paths:
        data = json.loads(Path(path).read_text())
        print(
            table(data["db"], summarise(data["rows"]), data["notify"], data.get("workers", 1))
            + f"\n\nstartup: {data['startup']}\n"
        )


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report:
        report(args.report)
        return
    build_jar()  # the HAPI launcher jar, rebuilt when its sources changed (needs Java 17+ and Maven)
    dbs = ["sqlite", "pg"] if args.db == "both" else ["pg" if args.db == "pg" else "sqlite"]
    cluster = start_cluster() if "pg" in dbs else None
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    try:
        info = machine_info(cluster.bindir if cluster else None)
        print(f"machine: {info['nproc']} x {info['cpu_model']}, load {info['loadavg_at_start']}", flush=True)
        for db in dbs:
            result = await run_pair(db, args, cluster)
            result["beside"] = await beside(db, args, cluster)
            summary = summarise(result["rows"])
            RESULTS.mkdir(parents=True, exist_ok=True)
            # a --quick smoke run never overwrites the figures of a full one
            kind = f"{'h2' if db == 'sqlite' else 'pg'}{'-quick' if args.quick else ''}"
            path = RESULTS / f"{stamp}-hapi-compare-{kind}.json"
            path.write_text(
                json.dumps(
                    {"machine": info, "args": vars(args), "summary": summary, **result}, indent=2, default=str
                )
                + "\n"
            )
            print(
                "\n"
                + table(db, summary, result["notify"], result["workers"])
                + f"\n\nstartup: {result['startup']}\nbeside: {result['beside']}\nwritten: {path}\n",
                flush=True,
            )
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())

"""The benchmark: SafeFlag against the raw ceiling (bench/ceiling_app.py), same machine, same run.

For each database (SQLite file in a temp dir; PostgreSQL: a throwaway cluster from
tests/support/postgres.py) it starts `safeflag serve --no-dispatcher` and the ceiling app with the
same worker count on free 127.0.0.1 ports, seeds both (bench/seed.py), then runs the workloads
create Flag, read Flag and the CP-IS search, each first on SafeFlag and then on the ceiling under
the same generator(s). Results: bench/results/<UTC date>-<db>.json and .csv, and a markdown table.
Target: create Flag >= 50% of the ceiling (docs/benchmarks.md).

    python -m bench.run                  # full run, both databases, both generators when wrk exists
    python -m bench.run --quick --db sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource as rlimit
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.procs import (
    ROOT,
    Server,
    ceiling_server,
    free_port,
    machine_busy_seconds,
    machine_info,
    safeflag_server,
    tree_cpu_seconds,
)
from bench.report import ORDER, summarise, table, write_results
from bench.seed import Sizes, seed_pair
from bench.workloads import CATEGORY_CODES, flag_body
from tests.support.postgres import PgCluster, start_cluster


def mint_token(env: dict[str, str]) -> str | None:
    """A bearer token for the runs: `safeflag token --sub bench --role admin --ttl 3600` with the
    server's environment (same data dir, so the same local issuer key). SAFEFLAG_BENCH_TOKEN wins.
    Returns None, so no Authorization header is sent, while the command does not exist yet."""
    if os.environ.get("SAFEFLAG_BENCH_TOKEN"):
        return os.environ["SAFEFLAG_BENCH_TOKEN"]
    argv = [sys.executable, "-m", "app.cli", "token", "--sub", "bench", "--role", "admin", "--ttl", "3600"]
    try:
        out = subprocess.run(
            argv, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines or lines[-1].count(".") != 2:  # a compact JWT has three parts
        return None
    return lines[-1].strip()


def write_plan(path: Path, workload: str, seed: dict[str, Any]) -> None:
    """The wrk script's view of a seed: the same request i as bench/workloads.py."""
    from bench.workloads import cpis_path

    lines = [f"W\t{workload}"]
    if workload == "read":
        lines += [f"G\t/fhir/Flag/{fid}" for fid in seed["flag_ids"]]
    elif workload == "search":
        lines += [f"G\t{cpis_path(nhs)}" for nhs, _n in seed["search"]]
    else:
        lines += [
            "T\t" + orjson.dumps(flag_body("@@PID@@", "@@NHS@@", "@@ORG@@", c)).decode()
            for c in CATEGORY_CODES
        ]
        lines += [f"P\t{pid}\t{nhs}" for pid, nhs in seed["create_patients"]]
        lines += [f"O\t{oid}" for oid in seed["create_orgs"]]
    path.write_text("\n".join(lines) + "\n")


def _children_cpu() -> float:
    ru = rlimit.getrusage(rlimit.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, token: str | None, pg_pid: int | None) -> None:
        self.args, self.work, self.token, self.pg_pid = args, work, token, pg_pid
        self.next_index: dict[str, int] = {}

    def generate(
        self, gen: str, seed_file: Path, seed: dict[str, Any], workload: str, duration: float, start: int
    ) -> dict[str, Any]:
        a = self.args
        if gen == "wrk":
            plan = seed_file.with_suffix(f".{workload}.plan")
            write_plan(plan, workload, seed)
            argv = [
                "wrk",
                "-t1",
                f"-c{a.concurrency}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "10s",
                "-s",
                str(ROOT / "bench" / "wrk.lua"),
                seed["base"],
                "--",
                str(plan),
                str(start),
                "1",  # wrk threads (-t1 above)
                self.token or "",
            ]
        else:
            argv = [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--seed",
                str(seed_file),
                "--workload",
                workload,
                "--concurrency",
                str(a.concurrency),
                "--duration",
                str(duration),
                "--warmup",
                "0",
                "--start-index",
                str(start),
            ] + (["--token", self.token] if self.token else [])
        out = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=duration + 120, check=False
        )
        line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith("{")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"{gen} failed ({out.returncode}): {out.stderr[-2000:]} {out.stdout[-2000:]}")
        res: dict[str, Any] = json.loads(line)
        if gen == "wrk":
            res["next_index"] = start + res.pop("used_per_thread") * res.pop("threads")
            first = res.pop("first_error", "")
            res["error_kinds"] = {first[:120]: res["errors"]} if first else {}
            res.update(workload=workload, concurrency=a.concurrency, generator="wrk")
        return res

    def measure(
        self, server: Server, seed_file: Path, seed: dict[str, Any], workload: str, gen: str
    ) -> dict[str, Any]:
        """Warm up (unrecorded), then one measured run with CPU accounting around it."""
        key = f"{server.name}:{workload}"
        start = self.next_index.get(key, 0)
        if self.args.warmup > 0:
            start = self.generate(gen, seed_file, seed, workload, self.args.warmup, start)["next_index"]
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        cpu0, db0, busy0, gen0, t0 = (
            server.cpu_seconds(),
            self._db_cpu(),
            machine_busy_seconds(),
            _children_cpu(),
            time.perf_counter(),
        )
        res = self.generate(gen, seed_file, seed, workload, self.args.duration, start)
        wall = time.perf_counter() - t0
        cpu, db, busy, gen_cpu = (
            server.cpu_seconds() - cpu0,
            self._db_cpu() - db0,
            machine_busy_seconds() - busy0,
            _children_cpu() - gen0,
        )
        self.next_index[key] = res["next_index"]
        n = max(res["ok"] + res["errors"], 1)
        res.update(
            target=server.name,
            server_cpu_ms_per_req=round(cpu * 1000 / n, 3),
            db_cpu_ms_per_req=round(db * 1000 / n, 3) if self.pg_pid else None,
            cpu_ms_per_req=round((cpu + db) * 1000 / n, 3),
            generator_cpu_s=round(gen_cpu, 2),
            server_cpu_s=round(cpu, 2),
            generator_ms_per_req=round(gen_cpu * 1000 / n, 3),
            other_load_cores=round(max(0.0, busy - cpu - db - gen_cpu) / wall, 2),
            loadavg_before=load_before,
            loadavg_after=Path("/proc/loadavg").read_text().split()[:3],
        )
        print(
            f"  {server.name:8s} {workload:6s} {gen:6s} {res['throughput']:8.1f} req/s  p50 {res['p50_ms']} ms"
            f"  p99 {res['p99_ms']} ms  errors {res['errors']}  other load {res['other_load_cores']} cores",
            flush=True,
        )
        return res

    def _db_cpu(self) -> float:
        return tree_cpu_seconds(self.pg_pid) if self.pg_pid else 0.0


def database_urls(db: str, work: Path, cluster: PgCluster | None) -> tuple[str, str]:
    if db == "sqlite":
        return f"sqlite+aiosqlite:///{work}/safeflag.db", f"sqlite+aiosqlite:///{work}/ceiling.db"
    assert cluster is not None
    for name in ("bench_safeflag", "bench_ceiling"):
        cluster.psql(f"DROP DATABASE IF EXISTS {name}")
        cluster.psql(f"CREATE DATABASE {name}")
    return cluster.url("bench_safeflag"), cluster.url("bench_ceiling")


def run_db(db: str, args: argparse.Namespace, cluster: PgCluster | None, gens: list[str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"safeflag-bench-{db}-"))
    sf_url, ceil_url = database_urls(db, work, cluster)
    sf = safeflag_server(free_port(), args.workers, work, sf_url)
    ce = ceiling_server(free_port(), args.workers, work, ceil_url, pool=10)
    pg_pid = (
        int((cluster.datadir / "postmaster.pid").read_text().split()[0]) if cluster and db == "pg" else None
    )
    rows: list[dict[str, Any]] = []
    try:
        startup = {"safeflag_start_s": round(sf.start(), 2), "ceiling_start_s": round(ce.start(), 2)}
        token = mint_token(sf.env)
        sizes = Sizes(search_patients=50, create_patients=400) if args.quick else Sizes()
        print(f"[{db}] seeding (auth: {'bearer token' if token else 'none'}) ...", flush=True)
        t0 = time.perf_counter()
        sf_seed, ce_seed = asyncio.run(seed_pair(sf.base, ce.base, sizes, token))
        startup.update(
            seed_s=round(time.perf_counter() - t0, 1), safeflag_rss_mb=sf.rss_mb(), ceiling_rss_mb=ce.rss_mb()
        )
        if cluster and db == "pg":
            # planner statistics of the seeded tables, as autovacuum keeps them on a live server; without
            # any, PostgreSQL drove the duplicate-flag check from every Flag's subject row until autovacuum
            # first ran, a minute into the measurements (bench/floor.py)
            for name in ("bench_safeflag", "bench_ceiling"):
                cluster.psql_in(name, "ANALYZE")
        files = {}
        for name, seed in (("safeflag", sf_seed), ("ceiling", ce_seed)):
            files[name] = work / f"seed-{name}.json"
            files[name].write_text(json.dumps(seed))
        bench = Bench(args, work, token, pg_pid)
        for workload in args.workloads:
            for gen in gens:
                for rnd in range(args.rounds):
                    pair = [(sf, sf_seed), (ce, ce_seed)]
                    for server, seed in pair if rnd % 2 == 0 else pair[::-1]:  # alternate to cancel drift
                        row = bench.measure(server, files[server.name], seed, workload, gen)
                        rows.append({"db": db, "round": rnd, **row})
    finally:
        ce.stop()
        sf.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {"db": db, "startup": startup, "token": bool(token), "rows": rows, "sizes": sizes.__dict__}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="SafeFlag vs the raw ceiling (see bench/run.py docstring)")
    p.add_argument("--db", choices=("sqlite", "pg", "both"), default="both")
    p.add_argument("--workloads", nargs="+", choices=ORDER, default=list(ORDER))
    p.add_argument(
        "--generator",
        choices=("python", "wrk", "both"),
        default="both",
        help="both = the Python httpx generator and wrk (when installed)",
    )
    p.add_argument("--workers", type=int, default=1, help="uvicorn workers, the same for both servers")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--rounds", type=int, default=2, help="repeat each pair, order alternating (medians reported)"
    )
    p.add_argument("--quick", action="store_true", help="5 s runs, 1 s warm-up, one round, a smaller seed")
    p.add_argument("--keep", action="store_true", help="keep the temp data dirs and server logs")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = min(args.duration, 5.0), min(args.warmup, 1.0), 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    gens = ["python", "wrk"] if args.generator == "both" else [args.generator]
    if "wrk" in gens and not shutil.which("wrk"):
        print("wrk not found (apt-get install -y wrk): using the Python generator only", file=sys.stderr)
        gens = [g for g in gens if g != "wrk"] or ["python"]
    dbs = ["sqlite", "pg"] if args.db == "both" else [args.db]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    cluster = start_cluster() if "pg" in dbs else None
    try:
        info = machine_info(cluster.bindir if cluster else None)
        print(f"machine: {info['nproc']} x {info['cpu_model']}, load {info['loadavg_at_start']}", flush=True)
        for db in dbs:
            result = run_db(db, args, cluster, gens)
            path = write_results(stamp, result, info, args)
            print(
                "\n"
                + table(db, summarise(result["rows"]))
                + f"\n\nstartup: {result['startup']}\nwritten: {path}\n",
                flush=True,
            )
    finally:
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    main()

"""Load generator (a separate process): asyncio + httpx, HTTP/1.1 keep-alive, N connections, a fixed
duration, every response checked, every latency recorded. Prints one JSON object.

    python -m bench.loadgen --seed seed.json --workload create --concurrency 16 --duration 15

The seed file (written by bench/run.py) describes the target: its base URL and the ids and NHS
numbers it holds. `--token` (or env SAFEFLAG_BENCH_TOKEN) sends `Authorization: Bearer`. The run is
bounded: it stops at the deadline, after `--max-requests`, when create requests run out (a repeated
flag would be a legitimate 409), or after `--max-errors` wrong responses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.workloads import WORKLOADS, Workload


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def summarise(latencies_s: list[float], errors: Counter[str], elapsed: float) -> dict[str, Any]:
    lat = sorted(x * 1000 for x in latencies_s)
    ok = len(lat)
    out: dict[str, Any] = {
        "requests": ok + sum(errors.values()),
        "ok": ok,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "duration_s": round(elapsed, 3),
        "throughput": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
    }
    for q in (50, 95, 99):
        v = percentile(lat, q)
        out[f"p{q}_ms"] = round(v, 2) if v is not None else None
    out["max_ms"] = round(lat[-1], 2) if lat else None
    return out


class Run:
    def __init__(self, workload: Workload, start_index: int, limit: int | None, max_errors: int) -> None:
        self.workload = workload
        self.next_index = start_index
        self.limit = limit
        self.max_errors = max_errors
        self.recording = False
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.stopped = asyncio.Event()

    def take(self) -> int | None:
        if self.limit is not None and self.next_index >= self.limit:
            self.stopped.set()
            return None
        i = self.next_index
        self.next_index += 1
        return i

    async def worker(self, client: httpx.AsyncClient, deadline: float) -> None:
        while not self.stopped.is_set() and time.perf_counter() < deadline:
            i = self.take()
            if i is None:
                return
            req = self.workload.request(i)
            content = orjson.dumps(req.body) if req.body is not None else None
            t0 = time.perf_counter()
            try:
                resp = await client.request(req.method, req.path, content=content)
                raw = resp.content
                elapsed = time.perf_counter() - t0
                body = orjson.loads(raw) if raw else None
                problem = self.workload.check(req, resp.status_code, resp.headers, body)
            except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
                elapsed, problem = time.perf_counter() - t0, type(exc).__name__
            if not self.recording:
                continue
            if problem is None:
                self.latencies.append(elapsed)
            else:
                self.errors[problem] += 1
                if sum(self.errors.values()) >= self.max_errors:
                    self.stopped.set()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    seed = json.loads(Path(args.seed).read_text())
    workload = Workload(args.workload, seed)
    capacity = workload.capacity()
    limit = (
        capacity
        if args.max_requests is None
        else min(capacity or sys.maxsize, args.start_index + args.max_requests)
    )
    state = Run(workload, args.start_index, limit, args.max_errors)
    headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    timeout = httpx.Timeout(args.timeout)
    async with httpx.AsyncClient(
        base_url=seed["base"], headers=headers, limits=limits, timeout=timeout, http1=True, http2=False
    ) as client:
        if args.warmup > 0:
            end = time.perf_counter() + args.warmup
            await asyncio.gather(*(state.worker(client, end) for _ in range(args.concurrency)))
        state.recording = True
        state.stopped.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*(state.worker(client, t0 + args.duration) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
    out = summarise(state.latencies, state.errors, elapsed)
    out.update(
        workload=args.workload,
        concurrency=args.concurrency,
        generator="python-httpx",
        next_index=state.next_index,
        base=seed["base"],
    )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", required=True, help="seed JSON written by bench/run.py")
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--concurrency", type=int, default=16, help="concurrent keep-alive connections")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds first")
    p.add_argument("--start-index", type=int, default=0, help="first request index (creates never repeat)")
    p.add_argument("--max-requests", type=int, default=None)
    p.add_argument("--max-errors", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    p.add_argument("--token", default=os.environ.get("SAFEFLAG_BENCH_TOKEN"), help="bearer token")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # the generator also runs on plain asyncio
        pass
    print(json.dumps(runner(run(args))))


if __name__ == "__main__":
    main()

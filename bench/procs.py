"""Processes for the benchmark: start/stop the servers under test, account their CPU, describe the machine.

CPU is read from /proc (utime+stime of a process and all its descendants), so that each figure can
also be given as CPU milliseconds per request: on a shared 2-core machine that is far steadier than
requests per second, and the "other load" (CPU used by processes that are not ours during a run) is
recorded next to every measurement.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO

import httpx

from tests.support.postgres import free_port  # noqa: F401  (re-exported for the bench scripts)

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds of `root_pid` and every descendant (a uvicorn master and its workers, or a postmaster
    and its backends)."""
    kids = _children()
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime (stat fields 14-17): the last two keep the CPU of exited,
        # reaped children (a PostgreSQL backend whose connection closed), so the sum never goes back
        total += sum(int(x) for x in fields[11:15])
        todo.extend(kids.get(pid, []))
    return total / TICK


def tree_rss_mb(root_pid: int) -> float:
    """Resident memory of a process and its descendants (uvicorn master + workers)."""
    kids, total, todo = _children(), 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS")), 0)
        todo.extend(kids.get(pid, []))
    return round(total / 1024, 1)


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores), from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return (sum(parts[:8]) - idle) / TICK


PROBE_LOOPS = 20_000  # about 1.5 ms of one core on the 2-vCPU machine at its full speed


def speed_probe() -> float:
    """Milliseconds this process takes for a fixed pure-Python loop on one core: how fast the machine runs
    just now. Timed between a bench's requests (never beside them, so it takes no CPU from the server),
    it shows when a virtual machine's host slowed it down (on the 2-vCPU machine the same loop runs up
    to 1.6 times slower in phases of some seconds, with nothing else running on it)."""
    start = time.perf_counter()
    total = 0
    for i in range(PROBE_LOOPS):
        total += i * i
    return (time.perf_counter() - start) * 1000


@dataclass
class Server:
    """One server under test, started in its own session so that it (and only it) can be stopped."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/readyz", timeout: float = 60.0) -> float:
        """Start and wait for `ready_path` to answer 200; returns the seconds it took."""
        self._log = self.log_path.open("wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text()[-3000:]
                )
            try:
                if httpx.get(self.base + ready_path, timeout=1.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def rss_mb(self) -> float:
        return tree_rss_mb(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the session we created for it, nothing else
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log:
            self._log.close()


def safeflag_server(port: int, workers: int, data_dir: Path, db_url: str, env: dict[str, str] | None = None) -> Server:
    return Server(
        "safeflag",
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-dispatcher",
        ],
        {
            "SAFEFLAG_DATA_DIR": str(data_dir),
            "SAFEFLAG_DATABASE_URL": db_url,
            "SAFEFLAG_BASE_URL": f"http://127.0.0.1:{port}",
            # the per-client token bucket (100/s by default) would measure itself; keep it running, never empty
            "SAFEFLAG_RATE_LIMIT_PER_SECOND": "1000000000",
            "SAFEFLAG_RATE_LIMIT_BURST": "1000000000",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        },
        port,
        data_dir / "safeflag-server.log",
    )


def ceiling_server(port: int, workers: int, data_dir: Path, db_url: str, pool: int) -> Server:
    # served exactly as app/cli.py serves SafeFlag: uvicorn, uvloop, httptools, no access log
    return Server(
        "ceiling",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.ceiling_app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "10",
        ],
        {
            "BENCH_CEILING_DB": db_url,
            "BENCH_CEILING_BASE": f"http://127.0.0.1:{port}",
            "BENCH_CEILING_POOL": str(pool),
            "PYTHONPATH": str(ROOT),
        },
        port,
        data_dir / "ceiling-server.log",
    )


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_info(pg_bindir: Path | None) -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(_first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]))
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "git_commit": f"{commit}{'+dirty' if dirty else ''}",
        "versions": {
            d: _version(d)
            for d in (
                "fastapi",
                "starlette",
                "uvicorn",
                "uvloop",
                "httptools",
                "sqlalchemy",
                "asyncpg",
                "aiosqlite",
                "fhir.resources",
                "pydantic",
                "orjson",
                "httpx",
            )
        },
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _first_line([str(pg_bindir / "postgres"), "--version"]) if pg_bindir else None,
        "wrk": _first_line(["wrk", "--version"]) if shutil.which("wrk") else None,
    }

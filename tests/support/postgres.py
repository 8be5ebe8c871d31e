"""A throwaway PostgreSQL cluster for the test session, started from the local binaries.

initdb/pg_ctl refuse to run as root, so as root they run as the `postgres` user (performance.md).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def find_bindir() -> Path | None:
    for name in ("pg_ctl", "initdb"):
        path = shutil.which(name)
        if path and Path(path).with_name("postgres").exists():
            return Path(path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    bindir: Path
    datadir: Path
    port: int
    as_user: list[str]
    opts: str = ""  # the server options it was started with, to start it again after `halt`

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{dbname}"

    def run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def psql(self, sql: str) -> None:
        self.psql_in("postgres", sql)

    def psql_in(self, dbname: str, sql: str) -> None:
        psql = self.bindir / "psql"
        exe = str(psql) if psql.exists() else "psql"
        self.run(exe, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", dbname, "-c", sql)

    def halt(self) -> None:
        """Shut the server down (fast: sessions are ended), keeping its data for `restart`."""
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", self.opts,
                 "-l", str(self.datadir.parent / "log"), "-w", "start")

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def start_cluster() -> PgCluster:
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found")
    root = Path(tempfile.mkdtemp(prefix="safeflag-pg-"))
    datadir = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
         "--no-locale"],
        check=True, capture_output=True, timeout=120,
    )
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", opts, "-l", str(root / "log"), "-w", "start"],
        check=True, capture_output=True, timeout=120,
    )
    cluster = PgCluster(bindir, datadir, port, as_user, opts)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    return cluster

"""A real `safeflag serve` process for the end-to-end tests: started on a free 127.0.0.1 port with its
own data directory, waited for on `/readyz`, stopped with SIGTERM (or killed with SIGKILL and started
again on the same port, data directory and database: `kill9`, `restart`).

Its clock is the test clock (`SAFEFLAG_TEST_CLOCK`, app/clock.py): it starts at `TEST_CLOCK` (the
instant tests/conftest.py's RunningClock starts at) at the moment it is launched and runs in real time,
so what the server dates (versions, ages, due times) never depends on the day the tests run. The
setting names that moment (`<instant>@<Unix time>`), so a restart, and any other process given the
same environment (a `safeflag dispatcher`, a second API process), goes on with the same clock.
`RunningServer.now()` is the server's time as the test sees it.

`RunningServer.headers` is the one place where e2e requests get their credentials: once the CLI has
the `token` command (contract section 1), a bearer token is minted from the server's own issuer key.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from app.clock import clock_for
from app.config import Settings
from tests.support.postgres import free_port

SAFEFLAG = Path(sys.executable).parent / "safeflag"
TEST_CLOCK = datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC)  # a Wednesday, GMT, no bank holiday near
READY_TIMEOUT_S = 60.0  # generous: 2 shared cores; the < 2 s target is reported, never asserted


def safeflag_command() -> list[str]:
    """The installed console script, or the module when the venv has no script (e.g. not installed)."""
    return [str(SAFEFLAG)] if SAFEFLAG.exists() else [sys.executable, "-m", "app.cli"]


def _has_token_command() -> bool:
    from app.cli import app as cli

    names = {c.name or (c.callback.__name__.replace("_", "-") if c.callback else "") for c in cli.registered_commands}
    return "token" in names


@dataclass
class RunningServer:
    proc: subprocess.Popen[bytes]
    base_url: str
    workdir: Path
    env: dict[str, str]
    startup_s: float = 0.0
    startup_rss_mb: float = 0.0
    startup_cpu_s: float = 0.0  # CPU time to ready: steadier than wall time on a shared machine
    headers: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=safeflag_command)  # the `safeflag` it runs
    args: list[str] = field(default_factory=list)  # the command that started it

    def now(self) -> datetime:
        """The server's time now (its test clock, app/clock.py; the system's when it has none)."""
        return clock_for(Settings(_env_file=None, testing=True,  # type: ignore[call-arg]
                                  test_clock=self.env.get("SAFEFLAG_TEST_CLOCK", ""))).now()

    @property
    def database(self) -> str:
        return "PostgreSQL" if "SAFEFLAG_DATABASE_URL" in self.env else "SQLite"

    @property
    def fhir_base(self) -> str:
        return self.base_url + "/fhir"

    def rss_mb(self) -> float:
        """Resident set size of the server process, from /proc (Linux)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used, from /proc (Linux)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stdout(self) -> str:
        return (self.workdir / "stdout.log").read_text()

    def stderr_lines(self) -> list[str]:
        return [line for line in (self.workdir / "stderr.log").read_text().splitlines() if line.strip()]

    def log_records(self) -> list[dict[str, object]]:
        """Every stderr line parsed as JSON (raises on the first line that is not)."""
        return [orjson.loads(line) for line in self.stderr_lines()]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful shutdown), then the exit code; SIGKILL only if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: the process ends at once, nothing of it runs (a crash)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def restart(self) -> None:
        """Start `safeflag serve` again with the same command, environment and data (the same issuer
        key, so `headers` stay valid) and wait until it is ready."""
        assert self.proc.poll() is not None, "restart() of a server that is still running"
        self.proc = _launch(self.args, self.env, self.workdir, append=True)
        self.startup_s = _wait_ready(self, time.perf_counter())

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _mint_headers(self) -> dict[str, str]:
        if not _has_token_command():
            return {}
        out = subprocess.run(
            [*self.command, "token", "--sub", "e2e-test", "--role", "admin"],
            env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=60, check=True,
        )
        return {"Authorization": f"Bearer {out.stdout.strip()}"}


def start_server(database_url: str | None = None, *, args: tuple[str, ...] = (),
                 extra_env: dict[str, str] | None = None, command: list[str] | None = None,
                 ready: bool = True, base_url_env: bool = True,
                 clock: datetime | None = TEST_CLOCK) -> RunningServer:
    """Start `safeflag serve` (SQLite in a temp data dir unless `database_url` is given) and wait until ready.
    `args` are more `serve` options (e.g. `--no-dispatcher`); `extra_env` more SAFEFLAG_ settings;
    `command` another installed `safeflag` (a wheel in its own virtual environment); `ready=False` waits
    only until it answers `/healthz` (a server that cannot be ready, e.g. on an unmigrated database);
    `base_url_env=False` leaves SAFEFLAG_BASE_URL unset, so the server derives it from its port (and
    `headers` are empty: a token must then be minted for that base URL); `clock` where the server's clock
    starts (None: the system clock)."""
    command = command or safeflag_command()
    workdir = Path(tempfile.mkdtemp(prefix="safeflag-e2e-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    env["SAFEFLAG_DATA_DIR"] = str(workdir / "data")
    if database_url:
        env["SAFEFLAG_DATABASE_URL"] = database_url
    if clock is not None:  # it reads `clock` now, and goes on from there in this process and any other
        env.update(SAFEFLAG_TESTING="true", SAFEFLAG_TEST_CLOCK=f"{clock.isoformat()}@{time.time():.3f}")
    env.update(extra_env or {})
    # what `serve` would derive from --port, set here so that `safeflag token` mints for the same issuer
    if base_url_env:
        env.setdefault("SAFEFLAG_BASE_URL", f"http://127.0.0.1:{port}")
    cmd = [*command, "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    started = time.perf_counter()
    proc = _launch(cmd, env, workdir)
    base_url = f"http://127.0.0.1:{port}"
    server = RunningServer(proc, base_url, workdir, env, command=command, args=cmd)
    try:
        server.startup_s = _wait_ready(server, started, "/readyz" if ready else "/healthz")
        server.startup_rss_mb = server.rss_mb()
        server.startup_cpu_s = server.cpu_s()
        server.headers = server._mint_headers() if base_url_env else {}
    except BaseException:
        server.cleanup()
        raise
    return server


def _launch(cmd: list[str], env: dict[str, str], workdir: Path, append: bool = False) -> subprocess.Popen[bytes]:
    # Files, not pipes: a full pipe would block the server's logging. cwd isolates it from a local .env.
    mode = "ab" if append else "wb"
    with open(workdir / "stdout.log", mode) as out, open(workdir / "stderr.log", mode) as err:
        return subprocess.Popen(cmd, env=env, cwd=workdir, stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def _wait_ready(server: RunningServer, started: float, probe: str = "/readyz") -> float:
    deadline = started + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as http:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"safeflag serve exited with {server.proc.returncode} before it was ready:\n"
                    + "\n".join(server.stderr_lines()[-30:])
                )
            try:
                if http.get(server.base_url + probe).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise TimeoutError(f"safeflag serve was not ready within {READY_TIMEOUT_S} s:\n" + "\n".join(server.stderr_lines()[-30:]))

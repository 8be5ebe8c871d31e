"""The real HAPI FHIR JPA R4 sandbox for the `hapi` tests (issue 7, shared/docs/hapi-sandbox.md).

Builds our own launcher (tests/hapi/launcher, a Maven project on HAPI FHIR 8.8.0 + Spring Boot 3.5.7)
when its jar is missing or older than its sources, starts it on a free 127.0.0.1 port with in-memory
H2, waits for `GET /fhir/metadata` to answer 200 and stops it with SIGTERM (then SIGKILL).
No Docker, no fake server: the jar is HAPI's published JPA server code.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.postgres import free_port

LAUNCHER_DIR = Path(__file__).parent / "launcher"
JAR = LAUNCHER_DIR / "target" / "hapi-launcher.jar"
MIN_JAVA = 17
READY_TIMEOUT_S = 300.0  # hapi-sandbox.md: 45-120 s on 2 shared cores; 5 minutes before giving up
BUILD_TIMEOUT_S = 1800.0  # the first build downloads a few hundred MB into ~/.m2
STOP_TIMEOUT_S = 30.0
JAVA_OPTS = ["-Xmx2g"]
VALIDATOR_MAIN = "org.safeflag.hapi.ValidateProfiles"


class ToolchainMissing(Exception):
    """Java 17+ or Maven is not installed: the `hapi` tests cannot run here."""


class SandboxFailed(Exception):
    """The launcher did not build or the server did not come up; the message carries the evidence."""


def java_major(java: str) -> int | None:
    """Major version from `java -version` ("17.0.15" -> 17, legacy "1.8.0_392" -> 8)."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_toolchain() -> None:
    java = shutil.which("java")
    if java is None:
        raise ToolchainMissing(f"Java {MIN_JAVA}+ is not installed (no `java` on PATH)")
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        raise ToolchainMissing(f"Java {MIN_JAVA}+ is required, `{java} -version` reports {major}")
    if shutil.which("mvn") is None:
        raise ToolchainMissing("Maven is not installed (no `mvn` on PATH)")


def jar_is_stale() -> bool:
    if not JAR.exists():
        return True
    built = JAR.stat().st_mtime
    sources = [LAUNCHER_DIR / "pom.xml", *(p for p in (LAUNCHER_DIR / "src").rglob("*") if p.is_file())]
    return any(p.stat().st_mtime > built for p in sources)


def build_jar() -> float:
    """`mvn -q -B package -DskipTests` when the jar is stale; the seconds it took (0.0 when up to date)."""
    if not jar_is_stale():
        return 0.0
    started = time.perf_counter()
    try:
        out = subprocess.run(
            ["mvn", "-q", "-B", "-Dstyle.color=never", "package", "-DskipTests"],
            cwd=LAUNCHER_DIR, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise SandboxFailed(f"mvn package did not finish within {BUILD_TIMEOUT_S:.0f}s") from exc
    if out.returncode != 0 or not JAR.exists():
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-60:])
        raise SandboxFailed(f"mvn package failed in {LAUNCHER_DIR} (exit {out.returncode}):\n{tail}")
    return time.perf_counter() - started


def validator_command(*paths: str | Path) -> list[str]:
    """The offline profile validator from the same jar (PropertiesLauncher picks `loader.main`)."""
    return ["java", f"-Dloader.main={VALIDATOR_MAIN}", "-jar", str(JAR), *map(str, paths)]


@dataclass
class HapiProcess:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    startup_s: float = 0.0
    startup_rss_mb: float = 0.0
    build_s: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def log_path(self) -> Path:
        return self.workdir / "hapi.log"

    def _status(self, key: str) -> float:
        """A /proc/<pid>/status memory figure in MB (VmRSS now, VmHWM peak)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {key} in /proc status")

    def rss_mb(self) -> float:
        return self._status("VmRSS")

    def peak_rss_mb(self) -> float:
        return self._status("VmHWM")

    def log_tail(self, lines: int = 40) -> str:
        """ERROR and `Caused by:` lines (a stack trace's tail rarely names the cause), then the log's end."""
        if not self.log_path.exists():
            return "(no log)"
        log = self.log_path.read_text(errors="replace").splitlines()
        causes = [line for line in log if " ERROR " in line or line.startswith("Caused by:")][-12:]
        return "\n".join([*causes, "...", *log[-lines:]])

    def stop(self) -> int | None:
        """SIGTERM (Spring Boot shuts down cleanly), SIGKILL if it hangs; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_hapi(*extra_args: str) -> HapiProcess:
    """Start the built jar on a free loopback port and wait until `/fhir/metadata` answers 200."""
    workdir = Path(tempfile.mkdtemp(prefix="safeflag-hapi-"))
    port = free_port()
    cmd = ["java", *JAVA_OPTS, "-jar", str(JAR), f"--server.port={port}", "--server.address=127.0.0.1",
           *extra_args]
    started = time.perf_counter()
    # A file, not a pipe: nobody drains a pipe while the tests run, and a full pipe blocks the JVM's logging.
    with open(workdir / "hapi.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = HapiProcess(proc, port, workdir)
    try:
        server.startup_s = _wait_ready(server, started)
        server.startup_rss_mb = server.rss_mb()
    except BaseException:
        server.cleanup()  # the failure message already carries the log's tail
        raise
    return server


def _wait_ready(server: HapiProcess, started: float) -> float:
    deadline = started + READY_TIMEOUT_S
    last = "no answer yet"
    with httpx.Client(timeout=10.0) as http:
        while time.perf_counter() < deadline:
            if server.proc.poll() is not None:
                raise SandboxFailed(
                    f"HAPI exited with code {server.proc.returncode} before it was ready; log tail:\n"
                    + server.log_tail()
                )
            try:
                response = http.get(server.base_url + "/metadata")
                if response.status_code == 200:
                    return time.perf_counter() - started
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
    raise SandboxFailed(
        f"HAPI did not answer /fhir/metadata 200 within {READY_TIMEOUT_S:.0f}s (last: {last}); log tail:\n"
        + server.log_tail()
    )

"""Session fixtures for the `hapi` tests: the launcher jar and a real HAPI FHIR JPA R4 server.

Nothing here is autouse: pytest instantiates these session fixtures only when a selected test asks for
them, so HAPI is built and started only when a `hapi` test runs. Missing Java 17+/Maven skips those tests
with the reason, unless `SAFEFLAG_REQUIRE_HAPI=1` (CI) turns the skip into a failure. A failed build or
a server that never becomes ready always fails, with Maven's output or the server log's tail.
`SAFEFLAG_HAPI_URL=http://127.0.0.1:PORT/fhir` points `hapi_base_url` at an already running sandbox.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hapi.parity import http, safeflag_process, target  # noqa: F401  (fixtures of test_parity*.py)
from tests.hapi.sandbox import (
    JAR,
    HapiProcess,
    SandboxFailed,
    ToolchainMissing,
    build_jar,
    check_toolchain,
    start_hapi,
)

REQUIRE_HAPI = os.environ.get("SAFEFLAG_REQUIRE_HAPI") == "1"
_report: dict[str, HapiProcess] = {}
_measured: dict[str, float] = {}


@pytest.fixture(scope="session")
def hapi_jar() -> Path:
    """The built launcher jar (server and offline validator)."""
    try:
        check_toolchain()
    except ToolchainMissing as exc:
        if REQUIRE_HAPI:
            pytest.fail(f"SAFEFLAG_REQUIRE_HAPI=1 but the HAPI sandbox cannot run: {exc}")
        pytest.skip(f"HAPI sandbox tests need Java 17+ and Maven: {exc} "
                    "(SAFEFLAG_REQUIRE_HAPI=1 fails instead)")
    try:
        _measured["build_s"] = build_jar()
    except SandboxFailed as exc:
        pytest.fail(str(exc))
    return JAR


@pytest.fixture(scope="session")
def hapi_server(hapi_jar: Path) -> Iterator[HapiProcess]:
    try:
        server = start_hapi()
    except SandboxFailed as exc:
        pytest.fail(str(exc))
    server.build_s = _measured.get("build_s", 0.0)
    _report["server"] = server
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            _measured["peak_rss_mb"] = server.peak_rss_mb()
        server.cleanup()


@pytest.fixture(scope="session")
def hapi_base_url(request: pytest.FixtureRequest) -> str:
    """FHIR base URL of the sandbox, e.g. http://127.0.0.1:41234/fhir."""
    external = os.environ.get("SAFEFLAG_HAPI_URL")
    if external:
        return external.rstrip("/")
    server: HapiProcess = request.getfixturevalue("hapi_server")
    return server.base_url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Build time, start time and memory of the sandbox, for the CI log and docs/hapi-sandbox.md's comparison."""
    server = _report.get("server")
    if server is None:
        return
    peak = f", peak {_measured['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in _measured else ""
    terminalreporter.write_line(
        f"HAPI sandbox: jar build {server.build_s:.1f}s, ready in {server.startup_s:.1f}s, "
        f"RSS at ready {server.startup_rss_mb:.0f} MB{peak}"
    )


@pytest.fixture
async def hapi(hapi_base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the sandbox's FHIR base. Generous timeout: the first $validate loads the R4 core."""
    async with httpx.AsyncClient(base_url=hapi_base_url, timeout=120.0) as client:
        yield client

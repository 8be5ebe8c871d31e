"""docker-compose.yml and the Dockerfile, checked without Docker (there is no engine here; issue 7): the
services, ports, health checks and start order, every SAFEFLAG_* variable against app.config.Settings, the
database URLs against the postgres service, and the health-check commands themselves, run against real
local HTTP servers. Not a `hapi` test: it needs neither Java nor a HAPI server.
https://docs.docker.com/reference/compose-file/services/
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PORT = 8080  # SafeFlag's port in the container (contract section 1: `make run` serves on 8080 too)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of each Dockerfile instruction, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return (
        dict(item.split("=", 1) for item in env)
        if isinstance(env, list)
        else {k: str(v) for k, v in env.items()}
    )


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    out = []
    for spec in service["ports"]:
        host_ip, host_port, container_port = str(spec).split(":")
        out.append((host_ip, int(host_port), int(container_port)))
    return out


def test_services_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"safeflag", "postgres", "hapi"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["hapi"]["image"].startswith("hapiproject/hapi:v8.8.0-")  # HAPI 8.8.0, as the sandbox
    assert services["safeflag"]["build"] == "."
    for name in ("safeflag", "hapi"):
        assert services[name]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "depends_on" not in services["postgres"]
    assert set(compose["volumes"]) == {"postgres-data", "safeflag-data"}


def test_ports_are_published_on_loopback(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _published(services["safeflag"]) == [("127.0.0.1", PORT, PORT)]
    assert _published(services["hapi"]) == [("127.0.0.1", 8090, 8080)]
    assert "ports" not in services["postgres"]  # reached over the compose network only


def test_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]["healthcheck"]["test"]
    assert postgres[:2] == ["CMD", "pg_isready"]
    assert _arg(postgres, "-U") == _env(services["postgres"])["POSTGRES_USER"]
    safeflag = services["safeflag"]["healthcheck"]["test"]
    assert safeflag[:3] == ["CMD", "python", "-c"]
    assert f"http://127.0.0.1:{PORT}/readyz" in safeflag[3]
    hapi = services["hapi"]["healthcheck"]
    assert hapi["test"][:3] == ["CMD", "bash", "-c"]
    assert "/dev/tcp/127.0.0.1/8080" in hapi["test"][3] and "GET /fhir/metadata " in hapi["test"][3]
    assert _seconds(hapi["start_period"]) >= 120  # HAPI takes 45-120 s to start (hapi-sandbox.md)
    for service in services.values():
        check = service["healthcheck"]
        assert {"interval", "timeout", "retries"} <= set(check)


def test_safeflag_environment_is_settings(compose: dict[str, Any]) -> None:
    """Every SAFEFLAG_* variable is a real Settings field, and Settings reads them as meant."""
    env = _env(compose["services"]["safeflag"])
    names = {k for k in env if k.startswith("SAFEFLAG_")}
    assert names == set(env)
    assert {n.removeprefix("SAFEFLAG_").lower() for n in names} <= set(Settings.model_fields)
    settings = Settings(**{n.removeprefix("SAFEFLAG_").lower(): v for n, v in env.items()}, _env_file=None)  # type: ignore[arg-type]
    pg = _env(compose["services"]["postgres"])
    db = urlsplit(settings.effective_database_url)
    assert (db.scheme, db.hostname, db.port, db.path) == (
        "postgresql+asyncpg",
        "postgres",
        5432,
        "/" + pg["POSTGRES_DB"],
    )
    assert (db.username, db.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
    assert urlsplit(settings.base_url).port == PORT
    assert settings.webhook_hosts == ["host.docker.internal", "hapi:8080"]
    mounts = compose["services"]["safeflag"]["volumes"]
    assert f"safeflag-data:{settings.data_dir}" in mounts  # the issuer key survives a new container


def test_webhooks_reach_the_docker_host(compose: dict[str, Any]) -> None:
    """Inside the container 127.0.0.1 is the container: a receiver on the host is host.docker.internal,
    which `extra_hosts` maps to the host's gateway (Docker Desktop defines it itself), and which the
    allow-list admits on ports 80/443 (and the hapi service on 8080), not the container's own loopback."""
    from app.notify.allow import allowed

    service = compose["services"]["safeflag"]
    assert service["extra_hosts"] == ["host.docker.internal:host-gateway"]
    allow = Settings(webhook_allow=_env(service)["SAFEFLAG_WEBHOOK_ALLOW"], _env_file=None).webhook_hosts  # type: ignore[call-arg]
    verdicts = {url: allowed(url, allow) for url in (
        "http://host.docker.internal/hooks/safeflag", "https://host.docker.internal/hooks/safeflag",
        "http://hapi:8080/fhir", "http://host.docker.internal:9000/hook", "http://127.0.0.1/hook",
        "http://localhost/hook", "http://postgres:5432/")}
    assert verdicts == {
        "http://host.docker.internal/hooks/safeflag": True, "https://host.docker.internal/hooks/safeflag": True,
        "http://hapi:8080/fhir": True, "http://host.docker.internal:9000/hook": False, "http://127.0.0.1/hook": False,
        "http://localhost/hook": False, "http://postgres:5432/": False}


def test_hapi_environment(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["hapi"])
    assert env["hapi.fhir.fhir_version"] == "R4"
    assert env["hapi.fhir.subscription.resthook_enabled"] == "true"
    jdbc = urlsplit(env["SPRING_DATASOURCE_URL"].removeprefix("jdbc:"))
    assert (jdbc.scheme, jdbc.hostname, jdbc.port) == ("postgresql", "postgres", 5432)
    assert env["SPRING_DATASOURCE_USERNAME"] == _env(compose["services"]["postgres"])["POSTGRES_USER"]
    assert env["SPRING_JPA_PROPERTIES_HIBERNATE_DIALECT"].endswith(".HapiFhirPostgresDialect")
    # the database HAPI uses is created by the postgres service's init script
    (init,) = compose["services"]["postgres"]["configs"]
    assert init["target"].startswith("/docker-entrypoint-initdb.d/") and init["target"].endswith(".sql")
    sql = compose["configs"][init["source"]]["content"]
    assert f"CREATE DATABASE {jdbc.path.strip('/')} " in sql
    assert urlsplit(env["hapi.fhir.server_address"]).port == _published(compose["services"]["hapi"])[0][1]


def test_dockerfile_serves_the_composed_port(
    dockerfile: list[tuple[str, str]], compose: dict[str, Any]
) -> None:
    froms = [i for i, (instruction, _) in enumerate(dockerfile) if instruction == "FROM"]
    assert [dockerfile[i][1] for i in froms] == ["python:3.11-slim AS build", "python:3.11-slim"]
    build, image = dockerfile[froms[0]:froms[1]], dockerfile[froms[1]:]
    # the build stage makes the wheel; the image installs the locked dependencies, then only that wheel:
    # no source tree, no PYTHONPATH
    assert ("COPY", "pyproject.toml setup.py README.md requirements.lock ./") in build
    assert ("RUN", "pip wheel --no-cache-dir --no-deps -w /dist . && cp requirements.lock /dist/") in build
    assert any(i == "RUN" and " ".join(args.split()).startswith(
        "pip install -r /tmp/dist/requirements.lock && pip install --no-deps /tmp/dist/*.whl ") for i, args in image)
    assert not any(i == "COPY" and not args.startswith("--from=build") for i, args in image)
    instructions = dict(image)
    assert "PYTHONPATH" not in instructions["ENV"]
    assert instructions["EXPOSE"] == str(PORT)
    cmd = json.loads(instructions["CMD"])
    assert cmd == ["safeflag", "serve", "--host", "0.0.0.0", "--port", str(PORT)]
    health = shlex.split(instructions["HEALTHCHECK"])
    assert (
        json.loads(instructions["HEALTHCHECK"][instructions["HEALTHCHECK"].index("CMD") + 4 :])
        == compose["services"]["safeflag"]["healthcheck"]["test"][1:]
    )
    assert "--start-period=20s" in health
    env = instructions["ENV"]
    data_dir = _env(compose["services"]["safeflag"])["SAFEFLAG_DATA_DIR"]
    assert f"SAFEFLAG_DATA_DIR={data_dir}" in env and instructions["VOLUME"] == json.dumps([data_dir])


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "var", "tests/hapi/launcher/target", "**/__pycache__"} <= ignored
    for needed in ("app", "migrations", "fhir_profiles", "pyproject.toml", "setup.py", "README.md"):
        assert needed not in ignored and (ROOT / needed).exists()


class _Answer(BaseHTTPRequestHandler):
    statuses: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        status = self.statuses.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[tuple[int, dict[str, int]]]:
    """A real HTTP server on a free loopback port; tests set what each path answers."""
    statuses: dict[str, int] = {}
    handler = type("Answer", (_Answer,), {"statuses": statuses})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], statuses
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("service", "path"), [("safeflag", "/readyz"), ("hapi", "/fhir/metadata")])
def test_health_check_commands_work(
    compose: dict[str, Any], local_server: tuple[int, dict[str, int]], service: str, path: str
) -> None:
    """The exact commands of the compose file (port moved to the local server's): 0 on 200, else non-zero."""
    port, statuses = local_server
    argv = [
        arg.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("127.0.0.1/8080", f"127.0.0.1/{port}")
        for arg in compose["services"][service]["healthcheck"]["test"][1:]
    ]
    if argv[0] == "python":
        argv[0] = sys.executable
    for status, healthy in ((200, True), (503, False)):
        statuses[path] = status
        result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        assert (result.returncode == 0) == healthy, (status, result.stderr)


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60}
    return int(duration[:-1]) * units[duration[-1]]

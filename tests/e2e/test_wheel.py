"""SafeFlag as an integrator installs it: the wheel built from this checkout, installed with pip into a
fresh virtual environment outside the checkout (no editable install, no PYTHONPATH), then `safeflag
migrate`, `serve` (metadata, a create, `/readyz`) and `demo` run from an unrelated directory, on SQLite
and on PostgreSQL. The wheel must carry the migrations and the conformance resources it runs on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import _pg_url
from tests.e2e.server import start_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """The `safeflag` script of a fresh virtual environment holding only the built wheel and its
    dependencies (pip resolves them from the package index, as on a user's machine)."""
    root = Path(tempfile.mkdtemp(prefix="safeflag-wheel-"))
    try:
        built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                     "-w", str(root / "dist"), str(ROOT)], cwd=root)
        assert built.returncode == 0, built.stdout + built.stderr
        (wheel,) = (root / "dist").glob("safeflag-*.whl")
        venv = root / "venv"
        made = run([sys.executable, "-m", "venv", str(venv)], cwd=root)
        assert made.returncode == 0, made.stderr
        pip = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                   str(wheel)], cwd=root)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        yield venv / "bin" / "safeflag"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_wheel_carries_migrations_and_profiles() -> None:
    with tempfile.TemporaryDirectory() as out:
        built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                     "-w", out, str(ROOT)], cwd=Path(out))
        assert built.returncode == 0, built.stderr
        (wheel,) = Path(out).glob("safeflag-*.whl")
        names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("migrations", "fhir_profiles"):
        in_repo = {f"app/_data/{folder}/{p.relative_to(ROOT / folder).as_posix()}"
                   for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert in_repo and in_repo <= names, sorted(in_repo - names)[:5]
    web = {"app/web/templates/layout.jinja", "app/web/static/app.js", "app/web/static/app.css",
           "app/web/static/vendor/nhsuk-frontend.min.css", "app/web/static/vendor/nhsuk-frontend.min.js",
           "app/web/static/vendor/images/favicon.svg"}
    assert web <= names, sorted(web - names)  # the web app's pages and the pinned NHS.UK frontend


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment for one database; the working directory is a fresh folder outside the checkout."""
    workdir = Path(tempfile.mkdtemp(prefix="safeflag-wheel-run-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_") and k != "PYTHONPATH"}
    env["SAFEFLAG_DATA_DIR"] = str(workdir / "data")
    if request.param == "pg":
        env["SAFEFLAG_DATABASE_URL"] = _pg_url(request.getfixturevalue("pg_cluster"), "wheel")
    try:
        yield env
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_installed_wheel_migrates_serves_and_plays_the_demo(installed: Path, database: dict[str, str]) -> None:
    workdir = Path(database["SAFEFLAG_DATA_DIR"]).parent
    where = run([str(installed.with_name("python")), "-c", "import app; print(app.__file__)"], cwd=workdir,
                env=database)
    assert where.stdout.startswith(str(installed.parents[1])), where.stdout + where.stderr  # not the checkout

    migrated = run([str(installed), "migrate"], cwd=workdir, env=database)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "database is at the latest migration" in migrated.stderr

    extra = {k: v for k, v in database.items() if k.startswith("SAFEFLAG_") and k != "SAFEFLAG_DATA_DIR"}
    server = start_server(database.get("SAFEFLAG_DATABASE_URL"), extra_env=extra, command=[str(installed)])
    try:
        with httpx.Client(base_url=server.fhir_base, headers=server.headers, timeout=30) as http:
            meta = http.get("/metadata")
            assert meta.status_code == 200 and meta.json()["fhirVersion"] == "4.0.1"
            created = http.post("/Patient", json={
                "resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990000034"}],
                "birthDate": "2020-01-01"}, headers={"Content-Type": "application/fhir+json"})
            assert created.status_code == 201, created.text
            assert http.get(f"/Patient/{created.json()['id']}").json()["birthDate"] == "2020-01-01"
            # the profiles came with the wheel: a Flag breaking one of them is refused with 422
            flag = http.post("/Flag", json={"resourceType": "Flag", "status": "active",
                                            "code": {"text": "no category"},
                                            "subject": {"reference": f"Patient/{created.json()['id']}"}},
                             headers={"Content-Type": "application/fhir+json"})
            assert flag.status_code == 422, flag.text
        assert httpx.get(server.base_url + "/readyz").status_code == 200
        page = httpx.get(server.base_url + "/app/sign-in")  # the web app's templates came with the wheel
        assert page.status_code == 200 and "<h1>Sign in to SafeFlag</h1>" in page.text
        assert httpx.get(server.base_url + "/app/static/vendor/nhsuk-frontend.min.css").status_code == 200
    finally:
        server.stop()
        server.cleanup()

    demo = run([str(installed), "demo"], cwd=workdir, env=database)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "demo complete: every step OK" in demo.stdout

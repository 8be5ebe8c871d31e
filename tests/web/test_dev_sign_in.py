"""The development sign-in: off unless switched on, and then only on a loopback bind (the server refuses
to start otherwise) and only for a loopback client; the people are the `safeflag demo` borough's. Also the
session cookie's Secure attribute, which follows the base URL (TLS) or the setting."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from app.context import AppContext
from app.demo import borough
from app.main import create_app
from app.web.dev_sign_in import PEOPLE, check_bind
from app.web.session import COOKIE, TIMED_OUT
from tests.conftest import StepClock
from tests.e2e.server import RunningServer, safeflag_command, start_server
from tests.support.postgres import free_port
from tests.web.browser import check_page
from tests.web.conftest import audit_events, wait_for_path

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "http://dicom.nema.org/resources/ontology/DCM|110122"
LOGOUT = "http://dicom.nema.org/resources/ontology/DCM|110123"


@asynccontextmanager
async def _app_client(ctx: AppContext, client_host: str = "127.0.0.1", **settings: object
                      ) -> AsyncIterator[httpx.AsyncClient]:
    saved = ctx.settings
    ctx.settings = saved.model_copy(update=settings)
    try:
        transport = httpx.ASGITransport(app=create_app(ctx=ctx), client=(client_host, 50123))
        async with httpx.AsyncClient(transport=transport, base_url=ctx.settings.base_url) as http:
            yield http
    finally:
        ctx.settings = saved


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def test_the_people_are_the_demo_borough_s() -> None:
    refs = {f"{r['resourceType']}/{r['id']}" for r in borough.reference_data(borough.date(2026, 3, 4))}
    for person in PEOPLE:
        assert person.org in refs and (person.fhir_user is None or person.fhir_user in refs), person
    assert [(p.key, p.role, p.org) for p in PEOPLE] == [
        ("hv", "health-visitor", borough.ZERO19), ("lead", "safeguarding-lead", borough.ZERO19),
        ("ed-nurse", "ed-clinician", borough.ED), ("mash", "mash-practitioner", borough.MASH)]


@pytest.mark.parametrize(("enabled", "host", "refused"), [
    (True, "127.0.0.1", False), (True, "::1", False), (True, "localhost", False), (True, "127.0.0.2", False),
    (True, "0.0.0.0", True), (True, "::", True), (True, "192.0.2.10", True), (True, "", True),
    (False, "0.0.0.0", False),
])
def test_only_a_loopback_bind_may_have_development_sign_in(enabled: bool, host: str, refused: bool) -> None:
    assert (check_bind(enabled, host) is not None) is refused


def test_serve_refuses_to_start_with_development_sign_in_on_all_addresses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    env.update(SAFEFLAG_DATA_DIR=str(tmp_path / "data"), SAFEFLAG_WEB_DEV_SIGN_IN="1")
    done = subprocess.run([*safeflag_command(), "serve", "--host", "0.0.0.0", "--port", str(free_port())], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("error: refusing to start: development sign-in (SAFEFLAG_WEB_DEV_SIGN_IN) is allowed only "
                           "on a loopback address, not 0.0.0.0\n")
    assert not (tmp_path / "data" / "safeflag.db").exists()  # refused before anything else


def test_serve_refuses_to_start_with_a_role_map_that_is_not_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    env.update(SAFEFLAG_DATA_DIR=str(tmp_path / "data"), SAFEFLAG_WEB_ROLE_MAP='{"R8000": "system"}')
    done = subprocess.run([*safeflag_command(), "serve", "--port", str(free_port())], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: refusing to start: SAFEFLAG_WEB_ROLE_MAP maps to system: not roles a person may hold\n"


async def test_development_sign_in_on_loopback_signs_in_a_demo_person(clean_ctx: AppContext) -> None:
    async with _app_client(clean_ctx, web_dev_sign_in=True) as http:
        page = await http.get("/app/sign-in")
        assert page.status_code == 200 and "Sign in as Hana Visitor (health visitor, Demo 0-19 Service)" in page.text
        answer = await http.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "hv"})
        assert (answer.status_code, answer.headers["location"]) == (303, "/app")
        assert "secure" not in answer.headers["set-cookie"].lower()  # http base URL: no Secure
        home = await http.get("/app")
        assert home.status_code == 200 and "Your open notices" in home.text and "Hana Visitor" in home.text
        events = (await http.get("/fhir/AuditEvent", params={"subtype": LOGIN, "altid": "demo-hv"},
                                 headers={"Authorization": "Bearer " + _admin(clean_ctx)})).json()
    [event] = [e["resource"] for e in events["entry"] if e["search"]["mode"] == "match"]
    assert (event["outcome"], event["agent"][0]["who"]["reference"]) == ("0", "PractitionerRole/demo-hv")


def _admin(ctx: AppContext) -> str:
    from tests.conftest import admin_token

    return admin_token(ctx)


async def test_development_sign_in_is_off_by_default(clean_ctx: AppContext) -> None:
    async with _app_client(clean_ctx) as http:
        page = await http.get("/app/sign-in")
        assert "Development sign-in" not in page.text and "set-cookie" not in page.headers
        answer = await http.post("/app/dev-sign-in", data={"csrf_token": "x", "person": "hv"})
        assert answer.status_code == 403
        assert (await http.get("/app")).status_code == 303


async def test_development_sign_in_is_refused_to_a_client_not_on_loopback(clean_ctx: AppContext) -> None:
    async with _app_client(clean_ctx, web_dev_sign_in=True) as local:
        token = _csrf((await local.get("/app/sign-in")).text)
        cookie = local.cookies[COOKIE]
    async with _app_client(clean_ctx, "192.0.2.10", web_dev_sign_in=True) as remote:
        page = await remote.get("/app/sign-in")
        assert "Development sign-in" not in page.text
        remote.cookies.set(COOKIE, cookie, path="/app")
        answer = await remote.post("/app/dev-sign-in", data={"csrf_token": token, "person": "lead"})
        assert answer.status_code == 403 and "Development sign-in is not available here." in answer.text
        assert (await remote.get("/app")).status_code == 303
        events = (await remote.get("/fhir/AuditEvent", params={"subtype": LOGIN, "outcome": "4"},
                                   headers={"Authorization": "Bearer " + _admin(clean_ctx)})).json()
    [refused] = [e["resource"] for e in events["entry"] if e["search"]["mode"] == "match"]
    assert (refused["outcomeDesc"], refused["agent"][0]["who"]) == (
        "development sign-in refused: not available here", {"display": "unauthenticated"})


@pytest.mark.parametrize(("settings", "secure"), [
    ({}, False),
    ({"base_url": "https://safeflag.example.nhs.uk"}, True),
    ({"web_cookie_secure": "always"}, True),
    ({"base_url": "https://safeflag.example.nhs.uk", "web_cookie_secure": "never"}, False),
])
async def test_the_session_cookie_is_secure_behind_tls(clean_ctx: AppContext, settings: dict[str, object],
                                                       secure: bool) -> None:
    async with _app_client(clean_ctx, web_dev_sign_in=True, **settings) as http:
        page = await http.get("/app/sign-in")  # the development form's session, before anyone signs in
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/app" in cookie
    assert ("; secure" in cookie) is secure


@pytest.fixture(scope="module")
def dev_server() -> Iterator[RunningServer]:
    server = start_server(extra_env={"SAFEFLAG_WEB_DEV_SIGN_IN": "1", "SAFEFLAG_NO_DISPATCHER": "1"})
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


def test_development_sign_in_in_the_browser(driver: webdriver.Chrome, dev_server: RunningServer) -> None:
    assert f"  web app       : {dev_server.base_url}/app   (development sign-in: the demo borough's people)\n" \
        in dev_server.stdout()
    driver.get(dev_server.base_url + "/app")
    assert driver.current_url == dev_server.base_url + "/app/sign-in"
    assert "No identity provider is configured for this server" in driver.page_source
    check_page(driver, "sign-in-development")
    driver.find_element(By.XPATH, "//button[normalize-space()='Sign in as Sam Lead (safeguarding lead, Demo 0-19 Service)']").click()
    wait_for_path(driver, "/app")
    assert "Sam Lead" in driver.find_element(By.CSS_SELECTOR, ".nhsuk-header__account").text
    assert audit_events(dev_server, subtype=LOGIN, altid="demo-lead")[0]["outcome"] == "0"


async def test_a_session_nobody_comes_back_to_is_audited_as_timed_out_when_swept(
        clean_ctx: AppContext, clock: StepClock) -> None:
    """Hana signs in and leaves; a day and 16 minutes later someone else's new session clears hers out: her
    session's end is audited as an idle timeout by her (outcome 0), with no client address, since the
    request that swept it was not hers."""
    async with _app_client(clean_ctx, web_dev_sign_in=True) as hana:
        page = await hana.get("/app/sign-in")
        answer = await hana.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "hv"})
        assert answer.status_code == 303
    clock.reset(clock.current + timedelta(days=1, minutes=16))
    async with _app_client(clean_ctx, web_dev_sign_in=True) as other:
        assert (await other.get("/app/sign-in")).status_code == 200  # a new session: the sweep runs
        events = (await other.get("/fhir/AuditEvent", params={"subtype": LOGOUT, "altid": "demo-hv"},
                                  headers={"Authorization": "Bearer " + _admin(clean_ctx)})).json()
    [ended] = [e["resource"] for e in events["entry"] if e["search"]["mode"] == "match"]
    assert (ended["outcome"], ended["outcomeDesc"], ended["type"]["code"]) == ("0", TIMED_OUT, "110114")
    assert ended["agent"][0]["who"]["reference"] == "PractitionerRole/demo-hv"
    assert [agent["network"]["type"] for agent in ended["agent"] if "network" in agent] == ["5"]  # the server's only


async def test_back_after_lunch_she_is_told_she_timed_out_though_others_signed_in(
        clean_ctx: AppContext, clock: StepClock) -> None:
    """Others' sign-ins meanwhile do not clear her session out: back 3 hours later, she is sent to the
    sign-in page that says why, her session's end is audited as the timeout, and nothing as a failed
    attempt."""
    async with _app_client(clean_ctx, web_dev_sign_in=True) as hana:
        page = await hana.get("/app/sign-in")
        assert (await hana.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "hv"})
                ).status_code == 303
        clock.reset(clock.current + timedelta(hours=3))
        async with _app_client(clean_ctx, web_dev_sign_in=True) as other:
            page = await other.get("/app/sign-in")
            assert (await other.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "lead"})
                    ).status_code == 303
        back = await hana.get("/app")
        assert (back.status_code, back.headers["location"]) == (303, "/app/sign-in?timed-out=1")
        told = await hana.get(back.headers["location"])
        assert "You were signed out because you had not used SafeFlag for 15 minutes." in told.text
        auth = {"Authorization": "Bearer " + _admin(clean_ctx)}
        ends = (await hana.get("/fhir/AuditEvent", params={"subtype": LOGOUT, "altid": "demo-hv"}, headers=auth)).json()
        failed = (await hana.get("/fhir/AuditEvent", params={"subtype": LOGIN, "outcome": "4"}, headers=auth)).json()
    assert [e["resource"]["outcomeDesc"] for e in ends["entry"] if e["search"]["mode"] == "match"] == [TIMED_OUT]
    assert [e for e in failed.get("entry", []) if e["search"]["mode"] == "match"] == []


def test_make_run_signs_nobody_in_by_itself() -> None:
    """`make run` is `safeflag serve` with nothing switched on: its banner says no sign-in is configured, and
    its sign-in page offers no way in (no provider, no development people, a development post refused)."""
    # --no-print-directory: under `make test` this make is a sub-make, which would print "Leaving directory"
    command = subprocess.run(["make", "--no-print-directory", "-n", "run"], cwd=ROOT, capture_output=True,
                             text=True, check=True)
    assert command.stdout.splitlines()[-1] == ".venv/bin/safeflag serve "
    server = start_server(extra_env={"SAFEFLAG_NO_DISPATCHER": "1"})
    try:
        assert (f"  web app       : {server.base_url}/app   (no sign-in configured: see docs/web-app.md)\n"
                in server.stdout())
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            home = http.get("/app")
            assert (home.status_code, home.headers["location"]) == (303, "/app/sign-in")
            page = http.get("/app/sign-in")
            assert page.status_code == 200 and "set-cookie" not in page.headers
            assert "No identity provider is configured for this server" in page.text
            assert "/app/sign-in/start" not in page.text and "Development sign-in" not in page.text
            start = http.get("/app/sign-in/start")
            assert (start.status_code, start.headers["location"]) == (303, "/app/sign-in")
            refused = http.post("/app/dev-sign-in", data={"csrf_token": "x", "person": "lead"})
            assert refused.status_code == 403 and "set-cookie" not in refused.headers
            assert http.get("/app").status_code == 303
    finally:
        server.stop()
        server.cleanup()

"""Fixtures of the browser tests: a real OpenID Connect provider process, a real `safeflag serve` process
configured to sign in through it (on SQLite and on PostgreSQL), and a Selenium Chrome on the system
Chromium. `sign_in(driver, server, sub)` goes through the provider's own login, as a person does.

Users known to the provider (`USERS`) carry the claims a real provider would send: a health visitor and
a safeguarding lead of the demo 0-19 service, and an account with no SafeFlag role.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.storage.web_tables import web_session
from app.web.session import COOKIE
from tests.conftest import _pg_url
from tests.e2e.server import RunningServer, start_server
from tests.web.browser import start_chrome
from tests.web.provider import CLIENT_ID, CLIENT_SECRET, Provider, provider_login, start_provider

USERS: dict[str, dict[str, Any]] = {
    "hana.visitor": {"name": "Hana Visitor", "role": "health-visitor", "org": "Organization/demo-0-19",
                     "fhirUser": "PractitionerRole/demo-hv", "email": "hana.visitor@example.nhs.uk"},
    "sam.lead": {"name": "Sam Lead", "role": "safeguarding-lead", "org": "Organization/demo-0-19",
                 "fhirUser": "PractitionerRole/demo-lead", "email": "sam.lead@example.nhs.uk"},
    "no.role": {"name": "Nora Role", "email": "nora.role@example.nhs.uk"},
}
_databases = itertools.count()


@pytest.fixture(scope="session")
def provider() -> Iterator[Provider]:
    started = start_provider()
    try:
        for sub, claims in USERS.items():
            started.add_user(sub, claims)
        yield started
    finally:
        started.stop()


def web_env(provider: Provider, **extra: str) -> dict[str, str]:
    return {
        "SAFEFLAG_WEB_OIDC_ISSUER": provider.issuer,
        "SAFEFLAG_WEB_OIDC_CLIENT_ID": CLIENT_ID,
        "SAFEFLAG_WEB_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "SAFEFLAG_NO_DISPATCHER": "1",
        **extra,
    }


@pytest.fixture(scope="session", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def web_server(request: pytest.FixtureRequest, provider: Provider) -> Iterator[RunningServer]:
    """`safeflag serve` signing in through `provider`, on SQLite and on PostgreSQL."""
    url = None
    if request.param == "pg":
        url = _pg_url(request.getfixturevalue("pg_cluster"), f"web_{next(_databases)}")
    server = start_server(url, extra_env=web_env(provider))
    try:
        yield server
    finally:
        server.stop()
        server.cleanup()


@pytest.fixture(scope="session")
def chrome() -> Iterator[webdriver.Chrome]:
    driver = start_chrome()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def driver(chrome: webdriver.Chrome) -> webdriver.Chrome:
    """The browser on a blank page with no cookies left from an earlier test (each test signs in itself).
    Blank first: a live page left open would reconnect its event stream without the cleared cookie."""
    chrome.get("about:blank")
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chrome.get_log("browser")  # what an earlier test left in the console
    return chrome


def wait_for_path(driver: webdriver.Chrome, path: str, timeout: float = 20) -> None:
    WebDriverWait(driver, timeout).until(lambda d: d.current_url.split("?")[0].endswith(path))


def sign_in(driver: webdriver.Chrome, server: RunningServer, sub: str, *, expect: str = "/app") -> None:
    """Sign in as `sub` through the provider's own login page, starting at SafeFlag's sign-in page."""
    driver.get(server.base_url + "/app/sign-in")
    driver.find_element("link text", "Sign in").click()
    provider_login(driver, sub)
    wait_for_path(driver, expect)


def session_cookie(driver: webdriver.Chrome) -> str:
    cookie = driver.get_cookie(COOKIE)
    assert cookie is not None, "no session cookie"
    return str(cookie["value"])


async def _database_url(server: RunningServer) -> str:
    return server.env.get("SAFEFLAG_DATABASE_URL") or f"sqlite+aiosqlite:///{server.workdir / 'data' / 'safeflag.db'}"


async def session_rows(server: RunningServer) -> dict[str, datetime]:
    """Every stored session of the server: SHA-256 of its cookie -> last used."""
    engine = create_async_engine(await _database_url(server))
    try:
        async with engine.connect() as db:
            rows = (await db.execute(select(web_session.c.id_hash, web_session.c.last_seen))).all()
    finally:
        await engine.dispose()
    return {row.id_hash: row.last_seen for row in rows}


async def pending_logins(server: RunningServer) -> dict[str, dict[str, Any]]:
    """The sign-ins under way on the server: SHA-256 of the cookie -> what is kept for the callback."""
    engine = create_async_engine(await _database_url(server))
    try:
        async with engine.connect() as db:
            rows = (await db.execute(select(web_session.c.id_hash, web_session.c.login)
                                     .where(web_session.c.login.is_not(None)))).all()
    finally:
        await engine.dispose()
    return {row.id_hash: row.login for row in rows}


async def change_pending_login(server: RunningServer, cookie: str, **changes: str | None) -> None:
    """Change what the server keeps for a sign-in under way (None removes a value), in its own database:
    how a test makes the server send the provider no PKCE verifier, or a wrong one."""
    key = hashlib.sha256(cookie.encode()).hexdigest()
    engine = create_async_engine(await _database_url(server))
    try:
        async with engine.begin() as db:
            login = (await db.execute(select(web_session.c.login).where(web_session.c.id_hash == key))).scalar_one()
            login = {k: v for k, v in {**login, **changes}.items() if v is not None}
            await db.execute(update(web_session).where(web_session.c.id_hash == key).values(login=login))
    finally:
        await engine.dispose()


async def idle_for(server: RunningServer, cookie: str, idle: timedelta) -> None:
    """Make the session behind `cookie` look unused for `idle` more than it has been: its last use moved
    back in the server's own database (the server's clock is the real one; no test waits 15 minutes)."""
    key = hashlib.sha256(cookie.encode()).hexdigest()
    engine = create_async_engine(await _database_url(server))
    try:
        async with engine.begin() as db:
            last = (await db.execute(select(web_session.c.last_seen).where(web_session.c.id_hash == key))).scalar_one()
            await db.execute(update(web_session).where(web_session.c.id_hash == key).values(last_seen=last - idle))
    finally:
        await engine.dispose()


def audit_events(server: RunningServer, **params: str) -> list[dict[str, Any]]:
    """AuditEvents the server recorded, searched through its FHIR API as an admin."""
    answer = httpx.get(server.fhir_base + "/AuditEvent", params={"_count": "100", "_sort": "-date", **params},
                       headers=server.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return [entry["resource"] for entry in answer.json().get("entry", []) if entry.get("search", {}).get("mode") != "outcome"]

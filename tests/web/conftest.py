"""Fixtures of the browser tests: a real OpenID Connect provider process, a real `safeflag serve` process
configured to sign in through it (on SQLite and on PostgreSQL), and a Selenium Chrome on the system
Chromium. `sign_in(driver, server, sub)` goes through the provider's own login, as a person does.

Users known to the provider (`USERS`) carry the claims a real provider would send: a health visitor and
a safeguarding lead of the demo 0-19 service, and an account with no SafeFlag role.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.support.ui import WebDriverWait

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
    """The browser with no cookies left from an earlier test (each test signs in itself)."""
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return chrome


def wait_for_path(driver: webdriver.Chrome, path: str, timeout: float = 20) -> None:
    WebDriverWait(driver, timeout).until(lambda d: d.current_url.split("?")[0].endswith(path))


def sign_in(driver: webdriver.Chrome, server: RunningServer, sub: str, *, expect: str = "/app") -> None:
    """Sign in as `sub` through the provider's own login page, starting at SafeFlag's sign-in page."""
    driver.get(server.base_url + "/app/sign-in")
    driver.find_element("link text", "Sign in").click()
    provider_login(driver, sub)
    wait_for_path(driver, expect)

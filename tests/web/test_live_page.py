"""A health visitor's open page in a real browser against a real server (both databases): its live
updates do not hang on the NHS.UK frontend's script (a page whose components script is missing or
refused still connects and shows a new notice without a reload)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.server import RunningServer
from tests.web.conftest import sign_in
from tests.web.flows import attend, seed_server

LIVE_BOUND = 10.0  # seconds: a bound on waiting for the page to change by itself, not a timing assertion
COMPONENTS = "*/app/static/vendor/nhsuk-frontend.min.js"


def connected(driver: webdriver.Chrome) -> None:
    WebDriverWait(driver, LIVE_BOUND).until(
        lambda d: d.find_element(By.ID, "notices").get_attribute("data-connected") == "true")


@pytest.fixture
def without_components(driver: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The browser refuses the NHS.UK frontend's script (as when a checkout never fetched it, or a proxy
    strips it): every request for it fails."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [COMPONENTS]})
    try:
        yield driver
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        driver.execute_cdp_cmd("Network.disable", {})


def test_the_live_list_works_without_the_frontend_components_script(
    without_components: webdriver.Chrome, web_server: RunningServer
) -> None:
    driver = without_components
    seed_server(web_server)
    sign_in(driver, web_server, "hana.visitor")
    connected(driver)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert any("nhsuk-frontend.min.js" in e for e in errors), errors  # it really was refused
    driver.execute_script("window.stillTheSamePage = true")
    task_id = attend(web_server)
    WebDriverWait(driver, LIVE_BOUND).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-task="{task_id}"]'))
    assert driver.execute_script("return window.stillTheSamePage") is True  # no reload
    assert driver.execute_script("return document.body.classList.contains('js-enabled')") is True

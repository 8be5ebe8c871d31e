"""The pages work without JavaScript: with every script of the app refused by the browser (its own and the
NHS.UK frontend's), the health visitor reads her list and a notice and acknowledges it by keyboard (the
form posts and the page reloads), and the lead reads her desk; each page passes the usual checks (axe,
no console error, no identifier in a URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.e2e.server import RunningServer
from tests.web.browser import check_page
from tests.web.conftest import sign_in, wait_for_path
from tests.web.flows import attend, seed_server, tab_to, task

SCRIPTS = "*/app/static/*.js"


@pytest.fixture
def no_scripts(driver: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [SCRIPTS]})
    try:
        yield driver
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        driver.execute_cdp_cmd("Network.disable", {})


def test_she_reads_and_acknowledges_a_notice_without_javascript(no_scripts: webdriver.Chrome,
                                                                web_server: RunningServer) -> None:
    driver = no_scripts
    seed_server(web_server)
    task_id = attend(web_server)
    sign_in(driver, web_server, "hana.visitor")
    row = f'[data-task="{task_id}"]'
    assert driver.find_elements(By.CSS_SELECTOR, row)
    assert driver.execute_script("return document.body.classList.contains('js-enabled')") is False  # no script ran
    assert driver.find_element(By.ID, "notices").get_attribute("data-connected") is None  # no live stream
    assert "Casey Demo" in driver.find_element(By.CSS_SELECTOR, row).text
    check_page(driver, f"inbox-no-js-{web_server.database}")
    tab_to(driver, f"{row} a")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for_path(driver, f"/app/notices/{task_id}")
    assert "999 000 0166" in driver.find_element(By.TAG_NAME, "main").text
    check_page(driver, f"notice-no-js-{web_server.database}")
    tab_to(driver, "textarea#note")
    driver.switch_to.active_element.send_keys("Seen at clinic")
    tab_to(driver, "button#acknowledge")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for_path(driver, "/app")  # the form posted and the browser was sent back to her list
    assert not driver.find_elements(By.CSS_SELECTOR, row)
    check_page(driver, f"inbox-acknowledged-no-js-{web_server.database}")
    stored = task(web_server, task_id)
    assert (stored["status"], stored["statusReason"]) == ("completed", {"text": "Seen at clinic"})
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    sign_in(driver, web_server, "sam.lead")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Safeguarding desk"
    assert not driver.find_elements(By.CSS_SELECTOR, row)
    check_page(driver, f"lead-desk-no-js-{web_server.database}")

"""Sign-in through a real OpenID Connect provider, in a real browser, against a real server."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.e2e.server import RunningServer
from tests.web.browser import check_page
from tests.web.conftest import sign_in


def test_health_visitor_signs_in_through_the_provider(driver: webdriver.Chrome, web_server: RunningServer) -> None:
    driver.get(web_server.base_url + "/app")
    assert driver.current_url == web_server.base_url + "/app/sign-in"  # not signed in: to the sign-in page
    check_page(driver, f"sign-in-{web_server.database}")
    sign_in(driver, web_server, "hana.visitor")
    assert driver.current_url == web_server.base_url + "/app"
    header = driver.find_element(By.CSS_SELECTOR, ".nhsuk-header__account").text
    assert "Hana Visitor" in header and "Sign out" in header
    assert driver.find_element(By.TAG_NAME, "h1").text == "Your open notices"  # her home page: her notices
    check_page(driver, f"home-{web_server.database}")

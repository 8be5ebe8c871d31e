"""A health visitor's open page in a real browser against a real server (both databases): its live
updates do not hang on the NHS.UK frontend's script (a page whose components script is missing or
refused still connects and shows a new notice without a reload), and a page that was away while more
changes than one live update covers were made (others' records) catches up in one update of its own
changes, missing nothing and never fetching its whole list again; a failed update or a lost stream
is shown in a status region (axe: zero violations in that state) until updates resume by themselves;
and a page whose stream is refused because her session timed out goes to the sign-in page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from app.web.pages import delta_limit
from tests.e2e.server import RunningServer
from tests.web.browser import assert_accessible, screenshot
from tests.web.conftest import idle_for, session_cookie, sign_in
from tests.web.flows import attend, attend_without_server, context_of, seed_server, task_of
from tests.web.pages_data import other_changes

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


async def far_behind(server: RunningServer) -> tuple[str, str, int]:
    """While the server is down: her notice, more other changes than one live update covers, and her
    second notice; their Encounters and how many changes one update covers."""
    ctx = context_of(server)
    first = await attend_without_server(server)
    limit = delta_limit(ctx.settings)
    await other_changes(ctx.engine, limit + 50)
    await ctx.close()
    return first, await attend_without_server(server), limit


def test_a_page_far_behind_catches_up_without_fetching_its_whole_list(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    seed_server(web_server)
    shown = attend(web_server)
    sign_in(driver, web_server, "hana.visitor")
    connected(driver)
    # the cards on the page are marked: a whole list fetched again would replace them with unmarked ones
    driver.execute_script("for (const el of document.querySelectorAll('[data-task]')) el.kept = true;"
                          "window.stillTheSamePage = true")
    web_server.stop()  # the page's stream is cut; meanwhile more changes than one update covers
    first, second, limit = asyncio.run(far_behind(web_server))
    assert limit == 99  # SAFEFLAG_SEARCH_MAX_VALUES (100) less the notice code's value
    logged = len(web_server.stderr_lines())
    web_server.restart()
    new = [task_of(web_server, first), task_of(web_server, second)]
    WebDriverWait(driver, LIVE_BOUND + 30).until(  # reconnected and caught up
        lambda d: all(d.find_elements(By.CSS_SELECTOR, f'[data-task="{t}"]') for t in new))
    assert driver.execute_script("return window.stillTheSamePage") is True
    assert driver.execute_script(f"return document.querySelector('[data-task=\"{shown}\"]').kept") is True
    cards = [c.get_attribute("data-task") for c in driver.find_elements(By.CSS_SELECTOR, "[data-task]")]
    assert cards[:2] == [new[1], new[0]] and shown in cards  # newest first (the server's earlier tests' after)
    lists = [r for r in web_server.log_records()[logged:] if r.get("path") == "/app/notices/list"]
    # one update: the others' changes she may not read are passed over, not paged through
    assert [r.get("status") for r in lists] == [200]


STATUS = "[data-live-status][role=status][aria-live=polite]"
STOPPED = ("Live updates have stopped\nNew notices may not appear on this page until they resume. SafeFlag keeps "
           "trying; reloading the page shows your notices as they are now.")


def her_open_page(driver: webdriver.Chrome, server: RunningServer) -> None:
    """The health visitor signed in on her open notices, the page's live stream connected."""
    seed_server(server)
    sign_in(driver, server, "hana.visitor")
    connected(driver)


def status_text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, STATUS).text)


def test_a_failed_live_update_or_a_lost_stream_is_shown_until_updates_resume(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    her_open_page(driver, web_server)
    driver.execute_script("window.stillTheSamePage = true")
    assert status_text(driver) == ""  # the region is there from the start, empty while updates work
    # the list's address answers nothing (a proxy or network fault): the update a new notice asks for fails
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/app/notices/list*"]})
    try:
        first = attend(web_server)
        WebDriverWait(driver, LIVE_BOUND).until(lambda d: status_text(d) == STOPPED)
        assert not driver.find_elements(By.CSS_SELECTOR, f'[data-task="{first}"]')
        # not check_page: the refused fetches are console errors here, on purpose
        screenshot(driver, f"inbox-live-failed-{web_server.database}")
        assert_accessible(driver, f"inbox-live-failed-{web_server.database}")
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        driver.execute_cdp_cmd("Network.disable", {})
    # the page tries again by itself: the notice arrives and the message goes
    WebDriverWait(driver, LIVE_BOUND + 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-task="{first}"]'))
    WebDriverWait(driver, LIVE_BOUND).until(lambda d: status_text(d) == "")

    web_server.stop()  # the stream is lost
    WebDriverWait(driver, LIVE_BOUND).until(lambda d: status_text(d) == STOPPED)
    assert_accessible(driver, f"inbox-live-lost-{web_server.database}")
    encounter = asyncio.run(attend_without_server(web_server))
    web_server.restart()
    second = task_of(web_server, encounter)
    WebDriverWait(driver, LIVE_BOUND + 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-task="{second}"]'))
    WebDriverWait(driver, LIVE_BOUND).until(lambda d: status_text(d) == "")
    assert driver.execute_script("return window.stillTheSamePage") is True  # no reload throughout


def test_a_page_whose_session_timed_out_while_its_stream_was_lost_goes_to_the_sign_in_page(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    her_open_page(driver, web_server)
    web_server.stop()  # the stream is lost; meanwhile her session passes its idle timeout
    asyncio.run(idle_for(web_server, session_cookie(driver), timedelta(minutes=15, seconds=1)))
    web_server.restart()
    # the stream's reconnection is refused (signed out): the page's next update takes her to sign in
    # (the refused reconnection ended the session and cleared its cookie, so the update finds none)
    WebDriverWait(driver, LIVE_BOUND + 30).until(lambda d: "/app/sign-in" in d.current_url)
    assert driver.current_url == web_server.base_url + "/app/sign-in"

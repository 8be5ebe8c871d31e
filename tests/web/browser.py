"""The browser side of the web tests: the system Chromium through chromedriver (Selenium), axe-core, and
screenshots in var/ci/screenshots/.

A machine without Chromium skips the browser tests, except where a browser is required
(`SAFEFLAG_REQUIRE_BROWSER=1`, or `CI=true` as .ci/run sets): there a missing browser fails.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from axe_selenium_python import Axe
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from app.fhir.nhs_number import is_valid
from tests.web.axe_core import axe_script

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "ci" / "screenshots"
REQUIRE_BROWSER = os.environ.get("SAFEFLAG_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"
# an NHS number as the test data has them (999 range), bare or grouped 3-3-4, not inside a longer number
NHS_NUMBER = re.compile(r"(?<!\d)999[ -]?\d{3}[ -]?\d{4}(?!\d)")
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1024")


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chrome() -> webdriver.Chrome:
    found = chromium_paths()
    if found is None:
        message = "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        if REQUIRE_BROWSER:
            pytest.fail(message + "; a browser is required here (CI or SAFEFLAG_REQUIRE_BROWSER=1)")
        pytest.skip(message + "; set SAFEFLAG_REQUIRE_BROWSER=1 to fail instead")
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations show there
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(30)
    return chrome


def assert_accessible(driver: webdriver.Chrome, page: str) -> None:
    """axe-core on the page as it is now: zero violations of any impact."""
    axe = Axe(driver, script_url=str(axe_script()))
    axe.inject()
    results = axe.run()
    violations = results["violations"]
    assert violations == [], f"{page}: axe found {len(violations)} violation(s):\n" + axe.report(violations)


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    driver.save_screenshot(str(path))
    return path


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """The browser console's errors since the last call (a script or style the CSP refused, a file that
    failed to load, a script error)."""
    return [str(e["message"]) for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def identifiers_in_urls(driver: webdriver.Chrome) -> list[str]:
    """Of the page's own address and every link, form action and file it names, those that carry a valid
    NHS number (bare, grouped or URL-encoded) or name an identifier (`identifier=`)."""
    urls = driver.execute_script(
        "return [location.href].concat(Array.from(document.querySelectorAll('a[href]'), a => a.href),"
        " Array.from(document.forms, f => f.action), Array.from(document.querySelectorAll('[src]'), e => e.src),"
        " Array.from(document.querySelectorAll('link[href]'), l => l.href))")
    return [url for url in urls if "identifier" in url.lower()
            or any(is_valid(re.sub(r"[ -]", "", found)) for found in NHS_NUMBER.findall(url.replace("%20", " ")))]


def check_page(driver: webdriver.Chrome, name: str) -> None:
    """What every page test does on every page of ours it reaches: a screenshot, no console error (so
    nothing the Content-Security-Policy refused, nothing missing), no inline script, no NHS number or other
    identifier in its address or any address it names (URLs reach logs and browser history), then axe
    (zero violations)."""
    screenshot(driver, name)
    assert identifiers_in_urls(driver) == [], name
    page = driver.current_url.split("#")[0]
    origin = "/".join(page.split("/")[:3])
    # ours only (not the provider's pages on the way); an error page's own status (403, 404) is logged as
    # a failed load of the page itself: not a fault
    errors = [e for e in console_errors(driver) if (e.startswith(origin + "/") or "Content Security Policy" in e)
              and not e.startswith(page + " - Failed to load resource")]
    assert errors == [], f"{name}: {errors}"
    scripts = driver.execute_script(
        "return Array.from(document.scripts).map(s => [s.src, s.type, s.textContent.trim().length])")
    assert scripts and all(src and not text for src, _type, text in scripts), scripts
    handlers = driver.execute_script(
        "return Array.from(document.querySelectorAll('*')).flatMap("
        "e => Array.from(e.attributes).filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))")
    assert handlers == [], handlers  # no inline event handler either
    assert_accessible(driver, name)

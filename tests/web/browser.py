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

from tests.web.axe_core import axe_script

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "ci" / "screenshots"
REQUIRE_BROWSER = os.environ.get("SAFEFLAG_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"
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


def check_page(driver: webdriver.Chrome, name: str) -> None:
    """What every page test does on every page it reaches: a screenshot, then axe (zero violations)."""
    screenshot(driver, name)
    assert_accessible(driver, name)

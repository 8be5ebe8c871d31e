"""A real OpenID Connect provider process for the web tests: `oidc-provider-mock` (authorization code,
discovery, JWKS, ID tokens signed RS256) held to PKCE S256 and keeping a session that RP-initiated
logout ends (tests/web/oidc_provider.py), started on a free 127.0.0.1 port, with users and their claims
put through its HTTP API, and the sign-in form a person fills in driven in the browser.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "safeflag-web"
CLIENT_SECRET = "web-test-client-secret"


@dataclass
class Provider:
    proc: subprocess.Popen[bytes]
    issuer: str
    log: Path

    def add_user(self, sub: str, claims: dict[str, Any]) -> None:
        """A person the provider signs in, with the claims its ID tokens carry for them."""
        answer = httpx.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        assert answer.status_code == 204, answer.text

    def sessions(self) -> list[str]:
        """The subjects signed in at the provider itself (its own session, which RP-initiated logout ends)."""
        return list(httpx.get(f"{self.issuer}/test/sessions", timeout=10).json())

    def logouts(self) -> list[dict[str, Any]]:
        """Each RP-initiated logout completed at the provider: the hint's subject and audience, the redirect."""
        return list(httpx.get(f"{self.issuer}/test/logouts", timeout=10).json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_provider() -> Provider:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.web.oidc_provider", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"oidc-provider-mock exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(issuer + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                return Provider(proc, issuer, log)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"oidc-provider-mock did not start:\n{log.read_text()}")


def provider_login(driver: webdriver.Chrome, sub: str) -> None:
    """On the provider's own authorization page: type the account's subject and authorise."""
    wait = WebDriverWait(driver, 20)
    field = wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[name=sub]")))
    field.clear()
    field.send_keys(sub)
    field.find_element(By.XPATH, "ancestor::form").find_element(By.CSS_SELECTOR, "button[type=submit]").click()

"""`make screenshots`: the pictures of the web app in README.md and docs/web-app.md, taken in the system
Chromium as the browser tests take theirs (the same OpenID Connect provider process, sign-in through its
own login page, Selenium), of a server whose clock is fixed, so the pages show the same dates, ages and
due times on every run.

The server runs in this process (uvicorn on a free 127.0.0.1 port, SQLite in a temporary folder), seeded
through its own API with the demo borough: two ED attendances (one urgent: the child has a plan), a
referral copy to the MASH. It writes docs/images/web-{inbox,notice,lead-desk,mash}.png, 1024 px wide.

    .venv/bin/python -m tests.web.screenshots
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from selenium import webdriver
from selenium.webdriver.common.by import By

from app.config import Settings
from app.context import AppContext
from app.demo import borough as b
from app.main import create_app
from app.resource_rules import resource_rules
from app.security.tokens import default_scope
from app.storage.migrate import upgrade
from app.vocabulary import CARE_TEAM_ROLE
from tests.security.tokens_fixture import issuer_for
from tests.support.postgres import free_port
from tests.web.browser import ROOT, start_chrome
from tests.web.conftest import USERS
from tests.web.flows import MASH_USER, SECOND_CHILD, SECOND_NHS
from tests.web.pages_data import seed_resources
from tests.web.provider import CLIENT_ID, CLIENT_SECRET, provider_login, start_provider

IMAGES = ROOT / "docs" / "images"
AT = datetime(2026, 1, 6, 10, 0, tzinfo=UTC)  # a Tuesday morning
WIDTH, HEIGHT = 1024, 1000
CONTUSION = [{"coding": [{"system": b.SNOMED, "code": "125667009", "display": "Contusion"}]}]


class FixedClock:
    """AT, except while someone signs in: the provider's ID token is checked against the real time."""

    signing_in = False

    def now(self) -> datetime:
        return datetime.now(UTC) if self.signing_in else AT


CLOCK = FixedClock()


class Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # runs in a thread
        pass


def _token(ctx: AppContext, role: str, **claims: str) -> dict[str, str]:
    minted = issuer_for(ctx).mint(sub=f"shots-{role}", role=role, scope=default_scope(role), ttl=3600,
                                  org=claims.get("org"), fhir_user=claims.get("practitioner"),
                                  care_setting=claims.get("care_setting"))
    return {"Authorization": f"Bearer {minted}"}


def _seed(fhir: str, ctx: AppContext) -> None:
    admin = _token(ctx, "admin")
    ed = _token(ctx, "ed-clinician", org=b.ED, practitioner=b.ED_NURSE, care_setting=b.ED_CARE_SETTING)
    hv = _token(ctx, "health-visitor", org=b.ZERO19, practitioner=b.HV)
    second = b.patient(SECOND_CHILD, SECOND_NHS, "Robin", "2025-03-01", "male",
                       managingOrganization={"reference": b.ZERO19})
    team = {"resourceType": "CareTeam", "id": "web-child-2-0-19", "status": "active",
            "subject": {"reference": SECOND_CHILD}, "participant": [
                {"role": [b.coding(CARE_TEAM_ROLE, "health-visitor")], "member": {"reference": b.HV}}]}
    with httpx.Client(base_url=fhir, timeout=30) as api:
        for res in [*seed_resources(AT.date()), second, team]:
            r = api.put(f"/{res['resourceType']}/{res['id']}", json=res, headers=admin)
            assert r.status_code in (200, 201), r.text
        assert api.post("/Flag", json=b.plan_flag(AT.date()), headers=admin).status_code == 201
        for child, start in ((SECOND_CHILD, "2026-01-05T19:40:00Z"), (b.CHILD, "2026-01-06T08:30:00Z")):
            enc = {**b.attendance(start), "subject": {"reference": child}, "reasonCode": CONTUSION}
            r = api.post("/Encounter", json=enc, headers=ed)
            assert r.status_code == 201, r.text
        bundle = json.loads(json.dumps(b.referral_copy("2026-01-06T09:10:00Z", "Referral text"))
                            .replace(b.ED_NURSE, b.HV))
        r = api.post(fhir, json=bundle, headers=hv)
        assert r.status_code == 200, r.text


def _shoot(driver: webdriver.Chrome, base: str, sub: str, pages: dict[str, str]) -> None:
    driver.delete_all_cookies()
    CLOCK.signing_in = True
    driver.get(base + "/app/sign-in")
    driver.find_element(By.LINK_TEXT, "Sign in").click()
    provider_login(driver, sub)
    deadline = time.monotonic() + 20
    while not driver.current_url.rstrip("/").endswith("/app") and time.monotonic() < deadline:
        time.sleep(0.05)
    CLOCK.signing_in = False
    for name, path in pages.items():
        if path == "first-notice":
            path = str(driver.find_element(By.CSS_SELECTOR, "[data-task] a").get_attribute("href"))
        driver.get(path if path.startswith("http") else base + path)
        time.sleep(0.5)  # the live stream connects and the page settles
        driver.save_screenshot(str(IMAGES / f"{name}.png"))


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="safeflag-shots-"))
    provider = start_provider()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'shots.db'}", base_url=base,
                        dispatcher_in_process=False, web_oidc_issuer=provider.issuer, web_oidc_client_id=CLIENT_ID,
                        web_oidc_client_secret=CLIENT_SECRET, _env_file=None)  # type: ignore[call-arg]
    migrate = AppContext.from_settings(settings, interceptors=resource_rules())

    async def migrated() -> None:
        await upgrade(migrate.engine)
        await migrate.close()
    asyncio.run(migrated())
    ctx = AppContext.from_settings(settings, interceptors=resource_rules(), clock=CLOCK)
    server = Server(uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    driver = None
    try:
        while not server.started:
            time.sleep(0.05)
        users: dict[str, dict[str, Any]] = {**USERS, "mia.mash": MASH_USER}
        for sub, claims in users.items():
            provider.add_user(sub, claims)
        _seed(base + "/fhir", ctx)
        IMAGES.mkdir(parents=True, exist_ok=True)
        driver = start_chrome()
        driver.set_window_size(WIDTH, HEIGHT)
        _shoot(driver, base, "hana.visitor", {"web-inbox": "/app", "web-notice": "first-notice"})
        _shoot(driver, base, "sam.lead", {"web-lead-desk": "/app/lead"})
        _shoot(driver, base, "mia.mash", {"web-mash": "/app/mash"})
    finally:
        if driver is not None:
            driver.quit()
        server.should_exit = True
        thread.join(timeout=20)
        provider.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for name in ("web-inbox", "web-notice", "web-lead-desk", "web-mash"):
        print(f"{IMAGES / name}.png: {(IMAGES / f'{name}.png').stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()

"""Helpers of the page flows in a real browser: the demo borough seeded into the running server through
its API, tokens of the borough's people minted by the server's own `safeflag token`, the notice (Task)
an attendance raised, keyboard-only navigation, and the escalation job run against the server's database
at an injected time (test-range NHS numbers only). Every date and instant is the server's test clock
(`TEST_CLOCK`, tests/e2e/server.py) or a fixed offset from it, never today's."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from app.config import Settings
from app.context import AppContext
from app.demo import borough as b
from app.resource_rules import resource_rules
from app.safeguarding.escalation import escalate_overdue
from app.vocabulary import CARE_TEAM_ROLE, FLAG_CATEGORY
from tests.e2e.server import TEST_CLOCK, RunningServer
from tests.web.pages_data import OTHER_HV, OTHER_ORG, SEXUAL_HEALTH, principal, seed_resources

OTHER_USER = {"name": "Olive Other", "role": "health-visitor", "org": OTHER_ORG, "fhirUser": OTHER_HV}
MASH_USER = {"name": "Mia Mash", "role": "mash-practitioner", "org": b.MASH}
SECOND_HV_USER = {"name": "Harriet Second", "role": "health-visitor", "org": b.ZERO19,
                  "fhirUser": "PractitionerRole/demo-hv2"}
SECOND_CHILD, SECOND_NHS = "Patient/web-child-2", "9990007101"
ED = principal("ed-clinician", b.ED, b.ED_NURSE, b.ED_CARE_SETTING)


def token(server: RunningServer, role: str, **claims: str) -> dict[str, str]:
    args = ["--sub", f"web-{role}", "--role", role]
    for name, value in claims.items():
        args += [f"--{name.replace('_', '-')}", value]
    out = subprocess.run([*server.command, "token", *args], env=server.env, cwd=server.workdir,
                         capture_output=True, text=True, timeout=60, check=True)
    return {"Authorization": f"Bearer {out.stdout.strip()}"}


def ed_token(server: RunningServer) -> dict[str, str]:
    return token(server, "ed-clinician", org=b.ED, practitioner=b.ED_NURSE, care_setting=b.ED_CARE_SETTING)


def hv_token(server: RunningServer) -> dict[str, str]:
    return token(server, "health-visitor", org=b.ZERO19, practitioner=b.HV)


def api(server: RunningServer, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.fhir_base, headers=headers or server.headers, timeout=30)


def seed_server(server: RunningServer) -> None:
    """The demo borough, the other organisation and a second child of the health visitor (idempotent PUTs)."""
    with api(server) as client:
        for resource in seed_resources(TEST_CLOCK.date()):
            r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            assert r.status_code in (200, 201), r.text
        child = b.patient(SECOND_CHILD, SECOND_NHS, "Robin", "2024-06-01", "male",
                          managingOrganization={"reference": b.ZERO19})
        team = {"resourceType": "CareTeam", "id": "web-child-2-0-19", "status": "active",
                "subject": {"reference": SECOND_CHILD}, "participant": [
                    {"role": [b.coding(CARE_TEAM_ROLE, "health-visitor")], "member": {"reference": b.HV}}]}
        for resource in (child, team):
            r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            assert r.status_code in (200, 201), r.text


def attendance(child: str = b.CHILD) -> dict[str, Any]:
    start = TEST_CLOCK.isoformat().replace("+00:00", "Z")  # when the server's clock started
    return {**b.attendance(start), "subject": {"reference": child}}


def attend(server: RunningServer, child: str = b.CHILD, headers: dict[str, str] | None = None) -> str:
    """An ED attendance POSTed by the ED; returns the id of the acknowledgement Task it raised."""
    with api(server, headers or ed_token(server)) as ed:
        r = ed.post("/Encounter", json=attendance(child))
        assert r.status_code == 201, r.text
    return task_of(server, str(r.json()["id"]))


def task_of(server: RunningServer, encounter: str) -> str:
    """The acknowledgement Task of the notice an attendance raised."""
    with api(server) as admin:
        comms = admin.get("/Communication", params={"encounter": f"Encounter/{encounter}"}).json()["entry"]
        tasks = admin.get("/Task", params={"focus": f"Communication/{comms[0]['resource']['id']}"}).json()
    return str(tasks["entry"][0]["resource"]["id"])


def restricted_flag(server: RunningServer, child: str) -> None:
    """A restricted flag written by the sexual health service: its own and the leads' to see."""
    flag = {**b.plan_flag(TEST_CLOCK.date()), "subject": {"reference": child}, "author": {"reference": SEXUAL_HEALTH},
            "category": [b.coding(FLAG_CATEGORY, "exploitation-risk")],
            "code": {"coding": [{"system": FLAG_CATEGORY, "code": "exploitation-risk"}]},
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                   "code": "R"}]}}
    with api(server, token(server, "sexual-health-clinician", org=SEXUAL_HEALTH)) as sh:
        r = sh.post("/Flag", json=flag)
        assert r.status_code in (201, 409), r.text  # 409: already there from an earlier run on this server


def referral_copy(server: RunningServer, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """A referral copy the health visitor sends the MASH (a transaction; `headers`: her token's, when
    already made); (its Communication, its DocumentReference) ids."""
    bundle = json.loads(json.dumps(b.referral_copy(TEST_CLOCK.isoformat(), "Referral text"))
                        .replace(b.ED_NURSE, b.HV))
    with api(server, headers or hv_token(server)) as hv:
        r = hv.post(server.fhir_base, json=bundle)
        assert r.status_code == 200, r.text
    where = [e["response"]["location"].split("/_history")[0].split("/")[-2:] for e in r.json()["entry"]]
    ids = {rtype: rid for rtype, rid in where}
    return ids["Communication"], ids["DocumentReference"]


def search(server: RunningServer, resource_type: str, **params: str) -> list[dict[str, Any]]:
    """What an admin finds through /fhir (the matches only)."""
    with api(server) as admin:
        r = admin.get(f"/{resource_type}", params=params)
        assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry") or [] if e["search"]["mode"] == "match"]


def task(server: RunningServer, task_id: str) -> dict[str, Any]:
    with api(server) as admin:
        out: dict[str, Any] = admin.get(f"/Task/{task_id}").json()
    return out


def context_of(server: RunningServer) -> AppContext:
    """An app context on the server's own database (for work done beside, or without, the server)."""
    settings = Settings(data_dir=server.workdir / "data", database_url=server.env.get("SAFEFLAG_DATABASE_URL"),
                        base_url=server.base_url, testing=True, test_clock=server.env.get("SAFEFLAG_TEST_CLOCK", ""),
                        _env_file=None)  # type: ignore[call-arg]
    return AppContext.from_settings(settings, interceptors=resource_rules())


async def escalate_at(server: RunningServer, when: datetime) -> int:
    """The escalation job (as the dispatcher's timer runs it) against the server's database at `when`."""
    ctx = context_of(server)
    try:
        return await escalate_overdue(ctx, when)
    finally:
        await ctx.close()


async def attend_without_server(server: RunningServer) -> str:
    """An ED attendance written through the interaction engine straight into the server's database (as
    another server process on it would), while this one is down; returns the Encounter's id."""
    ctx = context_of(server)
    try:
        async with ctx.unit_of_work(ED) as svc:
            outcome = await svc.create("Encounter", attendance())
        assert outcome.stored is not None
        return outcome.stored.id
    finally:
        await ctx.close()


def later(days: int) -> datetime:
    return TEST_CLOCK + timedelta(days=days)


def tab_to(driver: webdriver.Chrome, matches: str, limit: int = 300) -> None:
    """Press Tab until the focused element matches the CSS selector `matches` (keyboard only)."""
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.execute_script("return document.activeElement.matches(arguments[0])", matches):
            return
    raise AssertionError(f"Tab never reached {matches}")


def session_cookie(driver: webdriver.Chrome) -> dict[str, str]:
    cookie = driver.get_cookie("safeflag_session")
    assert cookie is not None
    return {"safeflag_session": cookie["value"]}

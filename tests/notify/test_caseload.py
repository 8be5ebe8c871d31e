"""`safeflag import-caseload FILE.csv` as a real process on both databases (contract section 1):
bad rows reported by line number and not written, good rows committed, a re-run changes nothing, a
hand-over ends the previous holder, and an ED attendance then reaches the imported health visitor."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx

from app.context import AppContext
from app.safeguarding.caseload import CASELOAD_SYSTEM
from tests.conftest import BASE_URL
from tests.e2e.server import safeflag_command
from tests.notify.ed_data import (
    born,
    borough,
    by_nhs,
    child,
    encounter,
    notices,
    post,
    practitioner,
    put,
    search,
    today,
)

HEADER = "nhs_number,practitioner,role,team,start_date"


async def _run(ctx: AppContext, tmp_path: Path, csv_text: str, *args: str) -> tuple[int, str]:
    path = tmp_path / "caseload.csv"
    path.write_text(csv_text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    env.update(SAFEFLAG_DATABASE_URL=ctx.settings.effective_database_url, SAFEFLAG_DATA_DIR=str(tmp_path),
               SAFEFLAG_BASE_URL=BASE_URL)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*safeflag_command(), "import-caseload", str(path), *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)

    done = await asyncio.to_thread(run)
    return done.returncode, done.stderr


def _lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.strip().startswith("line ")]


async def _team(api: httpx.AsyncClient, nhs: str) -> dict:
    teams = await search(api, "CareTeam", identifier=f"{CASELOAD_SYSTEM}|{nhs}")
    assert len(teams) == 1, teams
    return teams[0]


def _members(team: dict) -> list[tuple[str, str, dict]]:
    return [(p["role"][0]["coding"][0]["code"], p["member"]["reference"], p["period"]) for p in team["participant"]]


async def test_import_validate_rerun_and_route(api: httpx.AsyncClient, notify_ctx: AppContext, tmp_path: Path) -> None:
    await borough(api)
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    start = (today() - timedelta(days=30)).isoformat()
    csv_text = "\n".join([
        HEADER,
        f"9990000018,PractitionerRole/hv-1,health-visitor,Organization/zero19,{start}",
        f"9990000026,Practitioner/sn,school-nurse,Organization/zero19,{start}",
        f" 9990000026 , PractitionerRole/lead-1 ,safeguarding-lead,Organization/zero19,{start}",
        f"9990000019,PractitionerRole/hv-1,health-visitor,Organization/zero19,{start}",
        f"9990000034,PractitionerRole/hv-1,nurse,Organization/zero19,{start}",
        "9990000042,Patient/x,health-visitor,Team/1,2025-02-30",
        "",
        f"9990000050,PractitionerRole/nobody,health-visitor,Organization/zero19,{start}",
        f"9990000069,PractitionerRole/hv-1,health-visitor,Organization/nowhere,{start}",
    ]) + "\n"
    code, err = await _run(notify_ctx, tmp_path, csv_text, "--batch-size", "2")
    assert code == 1, err
    assert _lines(err) == [
        "line 5: nhs_number '9990000019' is not a valid NHS number (10 digits, Modulus 11)",
        "line 6: role 'nurse' must be one of health-visitor, school-nurse, safeguarding-lead",
        ("line 7: practitioner 'Patient/x' must be PractitionerRole/<id> or Practitioner/<id>; "
         "team 'Team/1' must be Organization/<id>; start_date '2025-02-30' must be a date YYYY-MM-DD"),
        "line 9: PractitionerRole/nobody not found on this server",
        "line 10: Organization/nowhere not found on this server",
    ]
    assert ("8 rows: 3 imported, 0 already there, 5 bad; CareTeams 2 created, 1 updated; Patients 1 created"
            in " ".join(err.split())), err
    first = await _team(api, "9990000018")
    assert first["subject"] == {"reference": "Patient/c1"}
    assert _members(first) == [("health-visitor", "PractitionerRole/hv-1", {"start": start})]
    assert "onBehalfOf" not in first["participant"][0]  # ctm-1: only for a Practitioner member
    second = await _team(api, "9990000026")
    assert _members(second) == [("school-nurse", "Practitioner/sn", {"start": start}),
                                ("safeguarding-lead", "PractitionerRole/lead-1", {"start": start})]
    assert second["participant"][0]["onBehalfOf"] == {"reference": "Organization/zero19"}
    new_patient = (await api.get(f"/fhir/{second['subject']['reference']}")).json()
    assert new_patient["identifier"] == [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000026"}]
    for nhs in ("9990000034", "9990000050", "9990000069"):  # nothing written for bad rows
        assert await search(api, "CareTeam", identifier=f"{CASELOAD_SYSTEM}|{nhs}") == []
        assert await search(api, "Patient", identifier=f"https://fhir.nhs.uk/Id/nhs-number|{nhs}") == []

    # a re-run writes nothing: no new versions, no new resources
    code, err = await _run(notify_ctx, tmp_path, csv_text)
    assert code == 1
    assert "8 rows: 0 imported, 3 already there, 5 bad; CareTeams 0 created, 0 updated; Patients 0 created" in " ".join(
        err.split())
    assert (await _team(api, "9990000018"))["meta"]["versionId"] == "1"
    assert len(await search(api, "CareTeam")) == 2 and len(await search(api, "Patient")) == 2

    # routing reaches the imported practitioners, also for a child known only by NHS number
    enc = await post(api, encounter(by_nhs("9990000018"), "Organization/ed"))
    assert (await notices(api, encounter=f"Encounter/{enc['id']}"))[0]["recipient"] == [
        {"reference": "PractitionerRole/hv-1"}]
    enc2 = await post(api, encounter(by_nhs("9990000026"), "Organization/ed"))  # no birth date on file
    assert (await notices(api, encounter=f"Encounter/{enc2['id']}"))[0]["recipient"] == [
        {"reference": "Practitioner/sn"}]

    # hand-over: a new health visitor from yesterday; the previous one ends the day before
    await put(api, "Practitioner", "hv2", practitioner("Newcomer"))
    handover = (today() - timedelta(days=1)).isoformat()
    code, err = await _run(notify_ctx, tmp_path,
                           f"{HEADER}\n9990000018,Practitioner/hv2,health-visitor,Organization/zero19,{handover}\n")
    assert code == 0, err
    team = await _team(api, "9990000018")
    assert team["meta"]["versionId"] == "2"
    assert _members(team) == [
        ("health-visitor", "PractitionerRole/hv-1",
         {"start": start, "end": (today() - timedelta(days=2)).isoformat()}),
        ("health-visitor", "Practitioner/hv2", {"start": handover}),
    ]
    enc3 = await post(api, encounter(by_nhs("9990000018"), "Organization/ed"))
    assert (await notices(api, encounter=f"Encounter/{enc3['id']}"))[0]["recipient"] == [
        {"reference": "Practitioner/hv2"}]


async def test_unusable_file(notify_ctx: AppContext, tmp_path: Path) -> None:
    code, err = await _run(notify_ctx, tmp_path, "nhs,practitioner\n9990000018,Practitioner/x\n")
    assert code == 2
    assert "the header row lacks column(s) nhs_number, role, team, start_date" in " ".join(err.split())
    code, err = await _run(notify_ctx, tmp_path, "")
    assert code == 2

"""Builders for the ED attendance flow (contract section 5): organisations, practitioners, a child's
CareTeam, flags, RelatedPersons and ED Encounters. Test-range NHS numbers only. The notification tests
run on CLOCK, real time from a fixed instant (reset before each test), so ages and attendance times are
relative to that clock and nothing depends on the day the suite runs."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from tests.conftest import RunningClock

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CS = "https://fhir.safeflag.example/CodeSystem/"
EXT = "https://fhir.safeflag.example/StructureDefinition/"
COMM_CATEGORY = CS + "safeguarding-communication-category"
TASK_CODES = CS + "safeguarding-task"
NOTICE_ID = "https://fhir.safeflag.example/Id/notice"
DNW = ("1066301000000103", "1066311000000101", "1066321000000107")
INJURY = ("417746004", "82271004", "125667009")
CLOCK = RunningClock()


def today() -> date:
    return CLOCK.now().date()


def born(years: int = 0, days: int = 0) -> str:
    """A birth date `years` years and `days` days before CLOCK's today (so the age is exactly that)."""
    on = today()
    try:
        anniversary = on.replace(year=on.year - years)
    except ValueError:  # 29 February
        anniversary = on.replace(year=on.year - years, day=28)
    return (anniversary - timedelta(days=days)).isoformat()


def organization(name: str, role: str | None = None) -> dict[str, Any]:
    org: dict[str, Any] = {"resourceType": "Organization", "name": name}
    if role:
        org["type"] = [{"coding": [{"system": CS + "organization-role", "code": role}]}]
    return org


def practitioner(family: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "name": [{"family": family, "given": ["Sam"]}]}


def practitioner_role(practitioner_ref: str, org_ref: str, role: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": practitioner_ref},
        "organization": {"reference": org_ref},
        "code": [{"coding": [{"system": CS + "care-team-role", "code": role}]}],
    }


def child(nhs: str, birth_date: str, managing: str | None = None, family: str = "Child") -> dict[str, Any]:
    p: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": family, "given": ["Alex"]}],
        "birthDate": birth_date,
    }
    if managing:
        p["managingOrganization"] = {"reference": managing}
    return p


def care_team(patient_ref: str, *members: tuple[str, str]) -> dict[str, Any]:
    """An active CareTeam: `members` are (care-team-role code, member reference)."""
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": patient_ref},
        "participant": [
            {"role": [{"coding": [{"system": CS + "care-team-role", "code": role}]}], "member": {"reference": ref}}
            for role, ref in members
        ],
    }


PLAN_CODES = {"child-protection-plan": "342191000000101", "looked-after-child": "764841000000100",
              "unborn-child-protection-plan": "818901000000100", "fgm": "902961000000107"}


def flag(subject_ref: str, category: str, author: str, status: str = "active") -> dict[str, Any]:
    """A Flag in the shape of fhir_profiles/examples/Flag-example-child-protection-plan.json."""
    return {
        "resourceType": "Flag",
        "status": status,
        "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": category}]}],
        "code": {"coding": [{"system": SNOMED, "code": PLAN_CODES[category]}]},
        "subject": {"reference": subject_ref},
        "period": {"start": "2025-11-03"},
        "author": {"reference": author},
    }


def related_person(patient_ref: str, *, nhs: str | None = None, parental: bool = False,
                   household: bool = False) -> dict[str, Any]:
    rp: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": patient_ref},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                      "code": "FTH"}]}],
        "name": [{"family": "Adult", "given": ["Jo"]}],
    }
    flags = [(EXT + "parental-responsibility", parental), (EXT + "household-member", household)]
    rp["extension"] = [{"url": url, "valueBoolean": value} for url, value in flags]
    if nhs:
        rp["identifier"] = [{"system": NHS, "value": nhs}]
    return rp


def now_instant() -> str:
    return CLOCK.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def encounter(subject: dict[str, Any], ed: str, *, status: str = "finished", disposition: str | None = None,
              reasons: tuple[str, ...] = (), start: str | None = None) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
        "subject": subject,
        "period": {"start": start or now_instant()},
        "serviceProvider": {"reference": ed},
    }
    if reasons:
        enc["reasonCode"] = [{"coding": [{"system": SNOMED, "code": code}]} for code in reasons]
    if disposition:
        enc["hospitalization"] = {"dischargeDisposition": {"coding": [{"system": SNOMED, "code": disposition}]}}
    return enc


def by_ref(patient_id: str) -> dict[str, Any]:
    return {"reference": f"Patient/{patient_id}"}


def by_nhs(nhs: str) -> dict[str, Any]:
    return {"identifier": {"system": NHS, "value": nhs}, "type": "Patient"}


async def put(api: httpx.AsyncClient, rtype: str, rid: str, body: dict[str, Any]) -> dict[str, Any]:
    """Update-as-create with a client id (contract section 2), so tests can name their resources."""
    resp = await api.put(f"/fhir/{rtype}/{rid}", json={**body, "id": rid})
    assert resp.status_code in (200, 201), resp.text
    out: dict[str, Any] = resp.json()
    return out


async def post(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post(f"/fhir/{body['resourceType']}", json=body)
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def borough(api: httpx.AsyncClient, *, duty: bool = True) -> None:
    """The reference data most tests share: an ED, a 0-19 service with a health visitor, a school nurse
    (known as a Practitioner only) and a safeguarding lead, and (optionally) the 0-19 duty team."""
    await put(api, "Organization", "ed", organization("City ED", "emergency-department"))
    await put(api, "Organization", "zero19", organization("North 0-19 service", "zero-to-nineteen-service"))
    await put(api, "Organization", "gp", organization("Riverside GP practice"))
    if duty:
        await put(api, "Organization", "duty", organization("0-19 duty desk", "zero-to-nineteen-duty"))
    await put(api, "Practitioner", "hv", practitioner("Visitor"))
    await put(api, "Practitioner", "sn", practitioner("Nurse"))
    await put(api, "Practitioner", "lead", practitioner("Lead"))
    await put(api, "PractitionerRole", "hv-1", practitioner_role("Practitioner/hv", "Organization/zero19",
                                                                 "health-visitor"))
    await put(api, "PractitionerRole", "lead-1", practitioner_role("Practitioner/lead", "Organization/zero19",
                                                                   "safeguarding-lead"))


async def search(api: httpx.AsyncClient, rtype: str, **params: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/fhir/{rtype}", params=params)
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", []) if e.get("search", {}).get("mode") != "outcome"]


async def notices(api: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    return await search(api, "Communication", _sort="_lastUpdated", **params)


def category(resource: dict[str, Any]) -> str:
    return str(resource["category"][0]["coding"][0]["code"])

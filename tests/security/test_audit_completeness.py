"""Audit completeness (contract section 3): in a scripted session through the real API, the number of
AuditEvents equals the number of accesses, refused ones included (outcome 4), and each names its
agent, interaction and entity. Both databases."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from sqlalchemy import select

from app.context import AppContext
from app.storage.tables import resource
from tests.support.fhir_data import organization, patient

ED = "Organization/ed-north"
HV_ORG = "Organization/zero-19"


def encounter(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "subject": {"reference": f"Patient/{pid}"},
        "serviceProvider": {"reference": ED},
    }


async def _events(ctx: AppContext) -> list[dict[str, Any]]:
    async with ctx.sessionmaker() as s:
        rows = (await s.execute(select(resource.c.content).where(resource.c.res_type == "AuditEvent"))).scalars()
        return list(rows)


async def test_one_audit_event_per_access_denied_included(client: httpx.AsyncClient, clean_ctx: AppContext,
                                                          auth: Any) -> None:
    ed = auth("ed-clinician", org=ED, care_setting="310000008")
    hv = auth("health-visitor", org=HV_ORG)
    statuses = []

    async def call(method: str, url: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        r = await client.request(method, url, headers=headers, **kw)
        statuses.append((method, url.split("?")[0], r.status_code))
        return r

    org = (await call("POST", "/fhir/Organization", json=organization())).json()["id"]  # admin
    pid = (await call("POST", "/fhir/Patient", json=patient(managingOrganization={"reference": f"Organization/{org}"}))).json()["id"]
    enc = (await call("POST", "/fhir/Encounter", ed, json=encounter(pid))).json()["id"]
    await call("GET", f"/fhir/Encounter/{enc}", ed)
    await call("GET", f"/fhir/Encounter?patient=Patient/{pid}", ed)
    await call("GET", f"/fhir/Patient/{pid}", ed)
    await call("GET", f"/fhir/Encounter/{enc}/_history/1", ed)
    denied = [
        await call("DELETE", f"/fhir/Encounter/{enc}", ed),  # only admin deletes
        await call("GET", "/fhir/AuditEvent", ed),  # clinicians do not read the audit trail
        await call("GET", f"/fhir/Encounter/{enc}", hv),  # another organisation's Encounter: hidden
        await call("POST", "/fhir/Patient", ed, json=patient("9990000026")),  # reference data: admin/system
    ]
    assert [r.status_code for r in denied] == [403, 403, 404, 403]
    await call("GET", "/fhir/Patient/does-not-exist", ed)  # an attempt on nothing is still an access

    events = await _events(clean_ctx)
    assert len(events) == len(statuses) == 12
    outcomes = Counter(e["outcome"] for e in events)
    assert outcomes == {"0": 7, "4": 5}
    subtypes = Counter(e["subtype"][0]["code"] for e in events)
    assert subtypes == {"create": 4, "read": 4, "search-type": 2, "vread": 1, "delete": 1}
    refused = [e for e in events if e["outcome"] == "4"]
    assert {e["outcomeDesc"] for e in refused} >= {
        "Role ed-clinician may not delete Encounter resources",
        "Role ed-clinician may not search AuditEvent resources",
    }
    reads = [e for e in events if e["subtype"][0]["code"] == "read" and e["outcome"] == "0"]
    for e in reads:
        whats = [ent.get("what", {}).get("reference") for ent in e["entity"]]
        assert f"Patient/{pid}" in whats  # the patient entity makes the access findable by patient
    # searchable by patient, agent, entity and date, by a safeguarding lead
    lead = auth("safeguarding-lead", org=HV_ORG)
    found = (await client.get(f"/fhir/AuditEvent?patient=Patient/{pid}&_count=100", headers=lead)).json()
    assert found["total"] >= 5
    by_entity = (await client.get(f"/fhir/AuditEvent?entity=Encounter/{enc}", headers=lead)).json()
    assert by_entity["total"] >= 3
    # the audit trail cannot be changed by anyone
    some = events[0]
    for method in ("PUT", "DELETE"):
        r = await client.request(method, "/fhir/AuditEvent/x", json={"resourceType": "AuditEvent"})
        assert r.status_code == 405
    assert some["resourceType"] == "AuditEvent"

"""Audit completeness (contract section 3): in a scripted session through the real API, the number of
AuditEvents equals the number of accesses, refused ones included (outcome 4), and each names its
agent, interaction and entity. Both databases."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from sqlalchemy import select

from app.context import AppContext
from app.storage.audit_tables import audit_event
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
        rows = (await s.execute(select(audit_event.c.content).order_by(audit_event.c.seq))).scalars()
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


async def test_requests_refused_by_routing_are_audited(client: httpx.AsyncClient, clean_ctx: AppContext,
                                                       auth: Any) -> None:
    """An id that breaks the FHIR id pattern, a resource type this server does not serve and an
    interaction nobody may perform are refused before any record is looked at; each is still one
    AuditEvent (outcome 4, the refusal's wording) naming the agent, the interaction and what was asked."""
    ed = auth("ed-clinician", org=ED, care_setting="310000008")
    long_id = "a" * 65
    bad_id = "SF-0102: 'bad!id' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"
    cases = [
        ("GET", "/fhir/Flag/bad!id", None, 400, "read", "R", "Flag/bad!id", bad_id),
        ("GET", "/fhir/Flag/bad!id/_history/1", None, 400, "vread", "R", "Flag/bad!id", bad_id),
        ("GET", "/fhir/Flag/bad!id/_history", None, 400, "history-instance", "R", "Flag/bad!id", bad_id),
        ("PUT", "/fhir/Encounter/bad!id", encounter("p1"), 400, "update", "U", "Encounter/bad!id", bad_id),
        ("PATCH", "/fhir/Encounter/bad!id", [], 400, "patch", "U", "Encounter/bad!id", bad_id),
        ("DELETE", f"/fhir/Encounter/{long_id}", None, 400, "delete", "D", f"Encounter/{long_id}",
         f"SF-0102: '{long_id}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)"),
        ("GET", "/fhir/Spaceship", None, 404, "search-type", "E", None,
         "SF-0300: Resource type 'Spaceship' is not supported"),
        ("POST", "/fhir/Spaceship", {"resourceType": "Spaceship"}, 404, "create", "C", None,
         "SF-0300: Resource type 'Spaceship' is not supported"),
        ("GET", "/fhir/Spaceship/s1", None, 404, "read", "R", "Spaceship/s1",
         "SF-0300: Resource type 'Spaceship' is not supported"),
        ("DELETE", "/fhir/Flag/f1", None, 405, "delete", "D", "Flag/f1",
         "SF-0405: Flag resources are never deleted; change their status instead"),
    ]
    for method, url, body, status, subtype, action, what, diagnostics in cases:
        before = await _events(clean_ctx)
        headers = {**ed, "Content-Type": "application/json-patch+json"} if method == "PATCH" else ed
        r = await client.request(method, url, headers=headers, json=body)
        assert (r.status_code, [i["diagnostics"] for i in r.json()["issue"]]) == (status, [diagnostics]), url
        new = [e for e in await _events(clean_ctx) if e not in before]
        assert len(new) == 1, url
        event = new[0]
        assert (event["type"]["code"], event["subtype"][0]["code"], event["action"]) == ("rest", subtype, action)
        assert (event["outcome"], event["outcomeDesc"]) == ("4", diagnostics.split(": ", 1)[1])
        assert event["agent"][0]["who"]["identifier"]["value"] == "test-ed-clinician"
        whats = [x["what"]["reference"] for x in event.get("entity", []) if "reference" in x.get("what", {})]
        assert whats == ([what] if what else []), url
    lead = auth("safeguarding-lead", org=HV_ORG)
    found = (await client.get("/fhir/AuditEvent?entity=Flag/bad!id", headers=lead)).json()
    assert found["total"] == 3

"""`GET /fhir/Patient/{id}/$safeguarding-summary` on both databases: the record banner's contents, what each
role sees of it, the access notifications it raises for unscheduled care, and its errors."""

from __future__ import annotations

from typing import Any

import httpx

from tests.safeguarding.support import (
    CHILD,
    CHILD_NHS,
    CS,
    ZERO19,
    borough,
    by_nhs,
    example,
    flag,
    oo,
    post,
    put,
    reason,
)
from tests.support.fhir_data import unidentified

SUMMARY = "/fhir/Patient/example-child/$safeguarding-summary"
ED = "Organization/example-ed"  # the serviceProvider of the example attendance
RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R",
              "display": "restricted"}
Auth = Any


def entries(bundle: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(mode, type, id) of each entry; the outcome entry's one-off urn:uuid identity is checked, then shown as ""."""
    found = [unidentified(e) if e["search"]["mode"] == "outcome" else e for e in bundle["entry"]]
    return [(e["search"]["mode"], e["resource"]["resourceType"], e["resource"].get("id", "")) for e in found]


def notice(category: str, status: str = "completed") -> dict[str, Any]:
    return {"resourceType": "Communication", "status": status, "subject": {"reference": CHILD},
            "category": [{"coding": [{"system": CS + "safeguarding-communication-category", "code": category}]}],
            "sent": "2026-01-04T12:00:00Z"}


async def attendances(client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two ED attendances of the child (by NHS number; she left before care was complete): two did-not-wait
    notices, two acknowledgement Tasks."""
    first = example("example-ed-attendance")
    await put(client, first)
    await put(client, {**first, "id": "second-attendance", "period": {"start": "2026-01-05T09:30:00Z"}})
    comms = (await client.get("/fhir/Communication?patient=Patient/example-child&_sort=sent")).json()["entry"]
    tasks = (await client.get("/fhir/Task?patient=Patient/example-child&_sort=authored-on")).json()["entry"]
    return [e["resource"] for e in comms], [e["resource"] for e in tasks]


async def test_the_summary_shows_active_flags_open_notices_and_recent_accesses(client: httpx.AsyncClient) -> None:
    await borough(client)
    cp = await put(client, example("example-child-protection-plan"))
    risk = await post(client, flag("exploitation-risk", by_nhs(CHILD_NHS), author=ZERO19))
    ended = await post(client, flag("looked-after-child", CHILD))
    assert (await client.put(f"/fhir/Flag/{ended['id']}", json={**ended, "status": "inactive",
                                                                 "extension": [reason()]})).status_code == 200
    await put(client, example("example-unborn-child-protection-plan"))  # the mother's, not the child's
    comms, tasks = await attendances(client)
    assert [c["category"][0]["coding"][0]["code"] for c in comms] == ["did-not-wait", "did-not-wait"]
    done = {**tasks[0], "status": "completed"}
    assert (await client.put(f"/fhir/Task/{done['id']}", json=done)).status_code == 200
    await post(client, notice("did-not-wait", "entered-in-error"))  # not shown
    access = await post(client, notice("access-notification"))
    for _ in range(30):  # more accesses to the child's record than the summary shows
        assert (await client.get("/fhir/Patient/example-child")).status_code == 200

    r = await client.get(SUMMARY)
    assert r.status_code == 200, r.text
    bundle = r.json()
    audits = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    assert entries(bundle) == [
        ("match", "Patient", "example-child"),
        ("match", "Flag", cp["id"]), ("match", "Flag", risk["id"]),
        ("include", "Organization", "example-local-authority"), ("include", "Organization", "example-zero-to-nineteen"),
        ("match", "Communication", comms[1]["id"]), ("match", "Communication", comms[0]["id"]),
        ("match", "Communication", access["id"]),
        ("match", "Task", tasks[1]["id"]),
        *[("match", "AuditEvent", a["id"]) for a in audits],
    ]
    assert (bundle["type"], bundle["total"], bundle["link"]) == ("searchset", 7 + 25, [
        {"relation": "self", "url": "http://127.0.0.1:8080/fhir/Patient/example-child/$safeguarding-summary"}])
    # the last 25 accesses to the child's record, newest first
    assert len(audits) == 25
    assert [a["recorded"] for a in audits] == sorted((a["recorded"] for a in audits), reverse=True)
    assert all({"reference": CHILD} in [e.get("what") for e in a["entity"]] for a in audits)
    # the summary itself is one audited access
    r = await client.get("/fhir/AuditEvent?patient=Patient/example-child&subtype=operation")
    assert r.json()["total"] == 1


async def test_what_an_ed_clinician_sees_and_whom_their_look_notifies(client: httpx.AsyncClient, auth: Auth) -> None:
    await borough(client)
    cp = await put(client, example("example-child-protection-plan"))
    risk = await post(client, flag("exploitation-risk", CHILD, author=ZERO19))
    shc = auth("sexual-health-clinician", org="Organization/sexual-health", care_setting="788122004")
    hidden = await post(client, flag("risk-to-self", CHILD, author="Organization/sexual-health"), headers=shc)
    assert RESTRICTED in hidden["meta"]["security"]
    comms, _tasks = await attendances(client)
    ed_nurse = auth("ed-clinician", org=ED, practitioner="Practitioner/ed-nurse", care_setting="310000008")

    r = await client.get(SUMMARY, headers={**ed_nurse, "X-Access-Context": "scheduled"})
    assert r.status_code == 200, r.text
    assert entries(r.json()) == [
        ("match", "Patient", "example-child"),
        ("match", "Flag", cp["id"]), ("match", "Flag", risk["id"]),
        ("include", "Organization", "example-local-authority"), ("include", "Organization", "example-zero-to-nineteen"),
        # the notices name the ED as sender; the Tasks are the 0-19 service's and AuditEvents are not theirs
        ("match", "Communication", comms[1]["id"]), ("match", "Communication", comms[0]["id"]),
        ("outcome", "OperationOutcome", ""),
    ]
    assert r.json()["entry"][-1]["resource"]["issue"][0]["diagnostics"].startswith(
        "SF-0820: Restricted records about the patient(s) of this search were withheld from this result.")
    notified = "/fhir/Communication?category=" + CS + "safeguarding-communication-category|access-notification"
    assert (await client.get(notified)).json()["total"] == 0  # a scheduled look is silent

    for _ in range(2):  # unscheduled: each owner of a flag shown is told once today
        assert (await client.get(SUMMARY, headers=ed_nurse)).status_code == 200
    found = [e["resource"] for e in (await client.get(notified + "&_sort=identifier")).json()["entry"]]
    assert [(c["recipient"], c["about"], c["sender"]) for c in found] == [
        ([{"reference": "Organization/example-local-authority"}], [{"reference": f"Flag/{cp['id']}"}], {"reference": ED}),
        ([{"reference": ZERO19}], [{"reference": f"Flag/{risk['id']}"}], {"reference": ED}),
    ]
    # the owning local authority (not an unscheduled setting) reads silently and sees its notification
    la = auth("mash-practitioner", org="Organization/example-local-authority")
    r = await client.get(SUMMARY, headers=la)
    assert (r.status_code, r.json()["issue"][0]["diagnostics"]) == (
        403, "SF-0805: Role mash-practitioner may not use safeguarding-summary")
    lead = auth("safeguarding-lead", org=ZERO19, care_setting="1326421000000106")
    r = await client.get(SUMMARY, headers=lead)
    assert [e for e in entries(r.json()) if e[1] == "Flag"] == [
        ("match", "Flag", cp["id"]), ("match", "Flag", risk["id"]), ("match", "Flag", hidden["id"])]
    assert (await client.get(notified)).json()["total"] == 2


async def test_unknown_and_deleted_patients(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Patient/nobody/$safeguarding-summary")
    assert (r.status_code, r.json()) == (404, oo({"severity": "error", "code": "not-found",
                                                  "diagnostics": "SF-0301: Patient/nobody is not known",
                                                  "expression": ["id"]}))
    await put(client, example("example-mother"))
    assert (await client.delete("/fhir/Patient/example-mother")).status_code == 204
    r = await client.get("/fhir/Patient/example-mother/$safeguarding-summary")
    assert (r.status_code, r.json()) == (410, oo({"severity": "error", "code": "deleted",
                                                  "diagnostics": "SF-0302: Patient/example-mother was deleted"}))
    r = await client.get("/fhir/Patient/bad$id/$safeguarding-summary")
    assert r.status_code == 400


async def test_the_summary_tells_once_of_records_withheld_from_whichever_section(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    """Restricted records withheld from any one section (here the notices alone: a sexual health service's
    Communication about the child, addressed to the ED, so within the ED nurse's reach) give the summary its
    one notice; none withheld, none (its sections' checks go out together)."""
    await borough(client)
    ed_nurse = {**auth("ed-clinician", org=ED, practitioner="Practitioner/ed-nurse", care_setting="310000008"),
                "X-Access-Context": "scheduled"}
    r = await client.get(SUMMARY, headers=ed_nurse)
    assert entries(r.json()) == [("match", "Patient", "example-child")]
    shc = auth("sexual-health-clinician", org="Organization/sexual-health", care_setting="788122004")
    hidden = await post(client, {**notice("think-family"), "recipient": [{"reference": ED}]}, headers=shc)
    assert RESTRICTED in hidden["meta"]["security"]
    r = await client.get(SUMMARY, headers=ed_nurse)
    assert entries(r.json()) == [("match", "Patient", "example-child"), ("outcome", "OperationOutcome", "")]
    assert r.json()["entry"][-1]["resource"]["issue"][0]["diagnostics"].startswith(
        "SF-0820: Restricted records about the patient(s) of this search were withheld from this result.")

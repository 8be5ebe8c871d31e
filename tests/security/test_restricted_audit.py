"""Audit records about a restricted record are restricted to the record's own readers: safeguarding
leads, admins and the organisation that wrote it. An AuditEvent that names the record, that records a
search or history which showed it, or a read refused because of it, is labelled R itself and kept as the
record's organisation's; so is every AuditEvent of a sexual-health writer's access (which children a
sexual-health service looks up is the secret the label keeps). Everyone else meets them as any
restricted record: left out of searches, `_summary=count`, `_include`, history and
`$safeguarding-summary`, and 403 on a direct read."""

from __future__ import annotations

import json
from typing import Any

import httpx

from app.security.labels import CONFIDENTIALITY
from tests.safeguarding.support import CHILD, ED, borough, flag, organization, put
from tests.security.tokens_fixture import Auth

SH, EPR = "Organization/sh", "Organization/epr"
R = [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}]


async def events(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    r = await client.get("/fhir/AuditEvent", params={"_count": "200", **params}, headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode}


async def test_audit_of_a_restricted_flag_is_restricted(client: httpx.AsyncClient, auth: Auth) -> None:
    await borough(client)
    await put(client, organization("sh", "Sexual health service"))
    sh = auth("sexual-health-clinician", org=SH)
    ed = auth("ed-clinician", org=ED)
    lead = auth("safeguarding-lead", org="Organization/elsewhere")
    other = auth("system", org=EPR, scope="system/AuditEvent.rs system/Flag.rs system/Patient.rs", sub=EPR)
    own = auth("system", org=SH, scope="system/AuditEvent.rs", sub=SH)
    r = await client.post("/fhir/Flag", json=flag("exploitation-risk", CHILD, SH), headers=sh)
    hidden = r.json()["id"]
    assert (await client.get(f"/fhir/Flag/{hidden}", headers=ed)).status_code == 403  # refused: restricted
    assert (await client.get(f"/fhir/Flag/{hidden}", headers=lead)).status_code == 200
    assert (await client.get("/fhir/Flag", params={"patient": CHILD}, headers=lead)).json()["total"] == 1
    assert (await client.get("/fhir/Flag", params={"patient": CHILD}, headers=ed)).json()["total"] == 0
    assert (await client.get(f"/fhir/Flag/{hidden}/_history", headers=lead)).status_code == 200

    everything = await events(client, {})  # the test client's admin sees every event
    restricted = {e["resource"]["id"]: e["resource"] for e in everything["entry"] if "security" in e["resource"]["meta"]}
    assert sorted((e["subtype"][0]["code"], e["outcome"], e["agent"][0]["altId"]) for e in restricted.values()) == [
        ("create", "0", "test-sexual-health-clinician"),
        ("history-instance", "0", "test-safeguarding-lead"),
        ("read", "0", "test-safeguarding-lead"),
        ("read", "4", "test-ed-clinician"),  # refused, for the record's label
        ("search-type", "0", "test-safeguarding-lead"),  # that showed it
    ]
    assert all(e["meta"]["security"] == R for e in restricted.values())
    unrestricted = ids(everything) - set(restricted)
    assert unrestricted  # the admin's writes, the ED's search that showed nothing restricted
    for e in everything["entry"]:
        if e["resource"]["id"] in unrestricted:
            assert hidden not in json.dumps(e["resource"]), e["resource"]
    unrestricted_of_child = ids(await events(client, {}, patient=CHILD)) & unrestricted

    # another organisation's system: only what names no restricted record, and a notice that some were withheld
    seen = await events(client, other, patient=CHILD)
    assert ids(seen) == unrestricted_of_child and hidden not in json.dumps(seen)
    assert [e["resource"]["issue"][0]["code"] for e in seen["entry"] if e["search"]["mode"] == "outcome"] == [
        "suppressed"]
    for params in ({"entity": f"Flag/{hidden}"}, {"agent": SH}, {"_id": ",".join(restricted)},
                   {"patient": CHILD, "_summary": "count"}, {"_include": "AuditEvent:entity", "patient": CHILD}):
        found = await events(client, other, **params)
        assert hidden not in json.dumps(found.get("entry", [])) and not ids(found) & set(restricted), params
    counted = (await events(client, other, patient=CHILD, _summary="count"))["total"]
    listed = ids(await events(client, other, patient=CHILD))  # a count shows no record: its event names no patient
    assert counted == len(listed) and not listed & set(restricted)
    history_all = (await client.get("/fhir/AuditEvent/_history", params={"_count": "500"}, headers=other)).json()
    not_its_own = [e for e in history_all["entry"] if e["resource"]["agent"][0]["altId"] != EPR]
    assert hidden not in json.dumps(not_its_own)  # its own searches' events repeat the id it asked for
    assert not {e["resource"]["id"] for e in history_all.get("entry", [])} & set(restricted)
    for rid in restricted:
        r = await client.get(f"/fhir/AuditEvent/{rid}", headers=other)
        assert (r.status_code, r.json()["issue"][0]["diagnostics"]) == (403, (
            "SF-0802: This AuditEvent is restricted; only safeguarding leads and the organisation that wrote it "
            "may see it"))
    flags = (await client.get("/fhir/Flag", params={"_revinclude": "AuditEvent:entity", "patient": CHILD},
                              headers=other)).json()
    assert hidden not in json.dumps(flags)

    # the organisation that wrote the flag, leads and admins see them all
    assert ids(await events(client, own)) >= ids(everything)  # and the searches since
    assert ids(await events(client, lead)) >= ids(everything)


async def test_a_sexual_health_writers_accesses_are_restricted(client: httpx.AsyncClient, auth: Auth) -> None:
    await borough(client)
    sh = auth("sexual-health-clinician", org=SH)
    other = auth("system", org=EPR, scope="system/AuditEvent.rs", sub=EPR)
    own = auth("system", org=SH, scope="system/AuditEvent.rs", sub=SH)
    assert (await client.get("/fhir/Patient/example-child", headers=sh)).status_code == 200
    assert (await client.get("/fhir/Flag", params={"patient": CHILD}, headers=sh)).status_code == 200
    assert (await client.get("/fhir/Encounter/nothing", headers=sh)).status_code == 404
    mine = await events(client, own, agent=SH)
    assert sorted(e["resource"]["subtype"][0]["code"] for e in mine["entry"]) == ["read", "read", "search-type"]
    assert all(e["resource"]["meta"]["security"] == R for e in mine["entry"])
    theirs = await events(client, other, agent=SH)
    assert (theirs["total"], theirs.get("entry")) == (0, None)


async def test_safeguarding_summary_keeps_restricted_accesses_out(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    await borough(client)
    await put(client, organization("sh", "Sexual health service"))
    sh = auth("sexual-health-clinician", org=SH)
    lead = auth("safeguarding-lead", org="Organization/elsewhere")
    other = auth("system", org=EPR)
    hidden = (await client.post("/fhir/Flag", json=flag("exploitation-risk", CHILD, SH), headers=sh)).json()["id"]
    assert (await client.get(f"/fhir/Flag/{hidden}", headers=lead)).status_code == 200
    summary = "/fhir/Patient/example-child/$safeguarding-summary"
    r = await client.get(summary, headers={**other, "X-Access-Context": "scheduled"})
    assert r.status_code == 200, r.text
    assert hidden not in r.text
    shown = [(e["search"]["mode"], e["resource"]["resourceType"]) for e in r.json()["entry"]]
    accesses = [e["resource"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    assert accesses and all("security" not in a["meta"] for a in accesses)
    assert shown[-1] == ("outcome", "OperationOutcome")
    r = await client.get(summary, headers={**lead, "X-Access-Context": "scheduled"})
    assert hidden in r.text


async def test_an_access_notification_naming_a_restricted_flag_is_restricted(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    """A safeguarding lead of the ED reads a restricted flag in unscheduled care: the sexual-health service
    is told, as CP-IS tells an owner; the ED's other clinicians (the notice's sender) must not read it."""
    await borough(client)
    await put(client, organization("sh", "Sexual health service"))
    sh = auth("sexual-health-clinician", org=SH)
    hidden = (await client.post("/fhir/Flag", json=flag("exploitation-risk", CHILD, SH), headers=sh)).json()["id"]
    lead = auth("safeguarding-lead", org=ED, care_setting="310000008")
    assert (await client.get(f"/fhir/Flag/{hidden}", headers=lead)).status_code == 200
    notices = {"category": "https://fhir.safeflag.example/CodeSystem/safeguarding-communication-category|"
                           "access-notification"}
    [told] = (await client.get("/fhir/Communication", params=notices, headers=sh)).json()["entry"]
    assert (told["resource"]["about"], told["resource"]["sender"], told["resource"]["meta"]["security"]) == (
        [{"reference": f"Flag/{hidden}"}], {"reference": ED}, R)
    ed = auth("ed-clinician", org=ED)
    found = (await client.get("/fhir/Communication", params={**notices, "patient": CHILD}, headers=ed)).json()
    assert [e["search"]["mode"] for e in found.get("entry", [])] == ["outcome"] and hidden not in json.dumps(found)
    r = await client.get(f"/fhir/Communication/{told['resource']['id']}", headers=ed)
    assert r.status_code == 403 and hidden not in r.text
    assert (await client.get(f"/fhir/Communication/{told['resource']['id']}", headers=lead)).status_code == 200

"""PATCH is authorised on the patched result exactly as PUT is on the same body: for every role x
resource type, on a record of the role's own organisation, of another one, and a restricted record of
another one, the PUT of the changed resource, the JSON Patch, the JSON merge patch and the PATCH entry
of a transaction that make the same change all answer the same: allowed (the same stored content), or
refused with the same status and message id. Over HTTP, on both databases.

The expected status of each cell comes from the hand-written matrix of test_policy_matrix.py (its
`expected` for an update), so a role that can never PATCH (every cell refused alike) fails here.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from tests.referrals.support import copy, referral
from tests.security.test_policy_matrix import TABLE, expected
from tests.security.tokens_fixture import Auth
from tests.support.fhir_data import binary_patch, outcome, req, tx

OWN, OTHER = "Organization/own", "Organization/other"
CS = "https://fhir.safeflag.example/CodeSystem/"
SD = "https://fhir.safeflag.example/StructureDefinition/"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RESTRICTED = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}
CHILD = {"reference": "Patient/child"}
DATA = base64.b64encode(b"referral text").decode()


def record(rtype: str, org: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A valid resource of the type naming `org` where the type names an organisation, and the JSON
    Patch of a typical change to it (a status change where the type has one)."""
    ref = {"reference": org}
    status = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]
    inactive = [{"op": "replace", "path": "/active", "value": False}]
    match rtype:
        case "Patient":
            return {"active": True, "name": [{"family": "Smith"}], "managingOrganization": ref}, inactive
        case "Practitioner":
            return {"active": True, "name": [{"family": "Jones"}]}, inactive
        case "PractitionerRole":
            return {"active": True, "organization": ref}, inactive
        case "Organization":
            return {"active": True, "name": "Borough Children's Services"}, inactive
        case "CareTeam":
            return {"status": "active", "subject": CHILD, "managingOrganization": [ref]}, [
                {"op": "replace", "path": "/status", "value": "inactive"}]
        case "RelatedPerson":
            return {"active": True, "patient": CHILD, "name": [{"family": "Smith"}]}, inactive
        case "Encounter":
            return {"status": "finished", "class": {"system": ACT, "code": "AMB"}, "subject": CHILD,
                    "serviceProvider": ref}, status
        case "Flag":  # docs/api/flags.md's "end a flag", on a looked-after-child flag (a plan type)
            return {
                "status": "active",
                "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": "looked-after-child"}]}],
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "764841000000100"}]},
                "subject": CHILD, "period": {"start": "2026-01-05"}, "author": ref,
            }, [
                {"op": "replace", "path": "/status", "value": "inactive"},
                {"op": "add", "path": "/period/end", "value": "2026-06-30"},
                {"op": "add", "path": "/extension", "value": [{
                    "url": SD + "status-reason",
                    "valueCodeableConcept": {"coding": [{"system": CS + "status-reason", "code": "plan-ended"}]}}]},
            ]
        case "Communication":
            return {
                "status": "completed",
                "category": [{"coding": [{"system": CS + "safeguarding-communication-category",
                                          "code": "referral-outcome"}]}],
                "subject": CHILD, "sent": "2026-01-05T09:00:00Z", "recipient": [ref], "sender": ref,
                "inResponseTo": [{"reference": "Communication/referral"}],
                "payload": [{"contentString": "Referral accepted for assessment"}],
            }, status
        case "DocumentReference":
            return {"status": "current", "subject": CHILD, "author": [ref], "custodian": ref,
                    "content": [{"attachment": {"contentType": "text/plain", "data": DATA}}]}, status
        case "Binary":
            return {"contentType": "text/plain", "data": DATA}, [
                {"op": "replace", "path": "/contentType", "value": "text/markdown"}]
        case "Task":
            return {"status": "requested", "intent": "order", "for": CHILD, "owner": ref}, [
                {"op": "replace", "path": "/status", "value": "in-progress"}]
        case "Subscription":
            return {"extension": [{"url": SD + "subscription-secret", "valueString": "s" * 32}],
                    "status": "off", "reason": "ED attendances", "criteria": SD.replace(
                        "StructureDefinition", "SubscriptionTopic") + "ed-attendance",
                    "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1/hook",
                                "payload": "application/fhir+json"}}, [
                {"op": "replace", "path": "/reason", "value": "Flags"}]
        case _:  # AuditEvent: written by the server only, refused before anything is read
            return {}, status


def applied(content: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The resource with the JSON Patch applied (only the top-level and one-level paths used above)."""
    out = orjson.loads(orjson.dumps(content))
    for op in ops:
        parts = op["path"].strip("/").split("/")
        target = out
        for key in parts[:-1]:
            target = target[key]
        target[parts[-1]] = op["value"]
    return out


def merge(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON merge patch making the same change."""
    out: dict[str, Any] = {}
    for op in ops:
        parts = op["path"].strip("/").split("/")
        target = out
        for key in parts[:-1]:
            target = target.setdefault(key, {})
        target[parts[-1]] = op["value"]
    return out


def content_of(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    return {**{k: v for k, v in resource.items() if k != "meta"}, **({"meta": meta} if meta else {})}


def answer(r: httpx.Response) -> tuple[int, Any]:
    """Status and, for a refusal, the OperationOutcome's message ids."""
    if r.status_code < 300:
        return r.status_code, None
    return r.status_code, [i["diagnostics"].split(":", 1)[0] for i in r.json()["issue"]]


# Rules that refuse the change itself once it is authorised (422), for PUT and PATCH alike: a Binary
# is immutable, a sexual-health writer's default labels would change a raised Flag's labels.
RULES = {("Binary", None): "SF-0913", ("Flag", "sexual-health-clinician"): "SF-0237"}
VARIANTS = ("own", "other", "other-restricted")
CASES = [pytest.param(rtype, role, variant, id=f"{rtype}-{role}-{variant}")
         for (rtype, role) in TABLE for variant in VARIANTS]


@pytest.mark.parametrize("rtype, role, variant", CASES)
async def test_patch_is_authorised_as_put(client: httpx.AsyncClient, auth: Auth, rtype: str, role: str,
                                          variant: str) -> None:
    org = OWN if variant == "own" else OTHER
    writer = auth("system", org=org)  # the record is created by a client of `org` (resource.created_by_org)
    r = await client.put("/fhir/Patient/child", json={"resourceType": "Patient", "id": "child"})
    assert r.status_code == 201, r.text
    if rtype == "Communication":  # a referral-outcome answers a stored MASH referral
        r = await client.put("/fhir/DocumentReference/copy", json={**copy("Patient/child"), "id": "copy"})
        assert r.status_code == 201, r.text
        r = await client.put("/fhir/Communication/referral", json={
            **referral("Patient/child", "DocumentReference/copy", org), "id": "referral"})
        assert r.status_code == 201, r.text
    body, ops = record(rtype, org)
    rid = "r1"
    original: dict[str, Any] = {"resourceType": rtype, "id": rid, **body}
    if variant == "other-restricted":
        original["meta"] = RESTRICTED
    if rtype != "AuditEvent":
        r = await client.put(f"/fhir/{rtype}/{rid}", json=original, headers=writer)
        assert r.status_code == 201, r.text
    user = auth(role, org=OWN)
    url = f"/fhir/{rtype}/{rid}"

    async def restore() -> None:
        r = await client.put(url, json=original, headers=writer)
        assert r.status_code == 200, r.text

    put = await client.put(url, json=applied(original, ops), headers=user)
    want = expected(TABLE[(rtype, role)], "update", role, variant == "own", variant == "other-restricted")
    rule = RULES.get((rtype, None), RULES.get((rtype, role)))
    if want == 200 and rule:
        assert answer(put) == (422, [rule]), put.text
    else:
        assert put.status_code == want, put.text
    if put.status_code == 200:
        stored_by_put = content_of(put.json())
        await restore()
    json_patch = await client.patch(url, content=orjson.dumps(ops), headers={
        **user, "Content-Type": "application/json-patch+json"})
    assert answer(json_patch) == answer(put)
    if put.status_code == 200:
        assert content_of(json_patch.json()) == stored_by_put
        await restore()
    elif rtype != "AuditEvent":  # there the verb differs: "cannot be patched", "cannot be updated"
        assert json_patch.json() == put.json()  # the same OperationOutcome, word for word
    merge_patch = await client.patch(url, content=orjson.dumps(merge(ops)), headers={
        **user, "Content-Type": "application/merge-patch+json"})
    assert answer(merge_patch) == answer(put)
    if put.status_code == 200:
        assert content_of(merge_patch.json()) == stored_by_put
        await restore()
    elif rtype != "AuditEvent":
        assert merge_patch.json() == put.json()
    entry = await client.post("/fhir", json=tx(req("PATCH", f"{rtype}/{rid}", binary_patch(ops))), headers={
        **user, "Prefer": "return=representation"})
    if put.status_code == 200:
        assert entry.status_code == 200, entry.text
        assert content_of(entry.json()["entry"][0]["resource"]) == stored_by_put
    else:
        assert answer(entry) == answer(put)
    if rtype != "AuditEvent":  # a refused PATCH changed nothing; each allowed write made one version
        now = await client.get(url, headers={**writer, "Accept": "application/fhir+json"})
        assert now.json()["meta"]["versionId"] == ("8" if put.status_code == 200 else "1")


async def test_readme_end_a_flag_as_mash_practitioner(client: httpx.AsyncClient, auth: Auth) -> None:
    """The documented example (docs/api/flags.md), which answered 403 SF-0804 ("may write only plan-type Flags") for a
    looked-after-child flag."""
    await client.put("/fhir/Patient/child", json={"resourceType": "Patient", "id": "child"})
    body, ops = record("Flag", "Organization/la")
    mash = auth("mash-practitioner", org="Organization/la")
    r = await client.post("/fhir/Flag", json={"resourceType": "Flag", **body}, headers=mash)
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    r = await client.patch(f"/fhir/Flag/{fid}", content=orjson.dumps(ops),
                           headers={**mash, "Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["period"]["end"], r.json()["meta"]["versionId"]) == ("inactive", "2026-06-30", "2")
    # turning the plan flag into another category is refused by PATCH as by PUT
    other = [{"op": "replace", "path": "/category/0/coding/0/code", "value": "exploitation-risk"}]
    r = await client.patch(f"/fhir/Flag/{fid}", content=orjson.dumps(other),
                           headers={**mash, "Content-Type": "application/json-patch+json"})
    assert r.status_code == 403
    assert r.json() == outcome("forbidden", "SF-0804: MASH practitioners may write only plan-type Flags "
                                            "(child-protection-plan, looked-after-child, unborn-child-protection-plan)")


async def test_patch_by_a_sexual_health_clinician_keeps_the_default_labels(client: httpx.AsyncClient,
                                                                          auth: Auth) -> None:
    """A PUT by a sexual-health writer stores its R + SEX labels whatever the body says; a PATCH that
    removes them is labelled again the same way (it could drop the restriction before)."""
    await client.put("/fhir/Patient/child", json={"resourceType": "Patient", "id": "child"})
    sh = auth("sexual-health-clinician", org=OWN)
    body, _ = record("Encounter", OWN)
    r = await client.post("/fhir/Encounter", json={"resourceType": "Encounter", **body}, headers=sh)
    assert r.status_code == 201, r.text
    eid, labels = r.json()["id"], r.json()["meta"]["security"]
    assert [c["code"] for c in labels] == ["R", "SEX"]
    r = await client.patch(f"/fhir/Encounter/{eid}", content=orjson.dumps([{"op": "remove", "path": "/meta/security"}]),
                           headers={**sh, "Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["security"] == labels

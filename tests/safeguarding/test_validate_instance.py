"""`POST /fhir/<Type>/<id>/$validate` (R4 Resource-validate at the instance level): the body is checked as
an update of that resource would be, by the same caller, and the answer is the update's verdict as a 200
OperationOutcome: the same issues a PUT answers with, nothing stored. `mode=profile` checks the profiles
only, `mode=delete` whether a delete would be accepted; the resource must be one the caller may read
(404/410/403 exactly as a read). Both databases."""

from __future__ import annotations

from typing import Any

import httpx

from tests.safeguarding.support import CHILD, LA, ZERO19, borough, flag, oo, post, reason, rule
from tests.support.fhir_data import outcome

OK = outcome("informational", "SF-0002: Validation successful: no errors found", severity="information")
IMMUTABLE = ("cannot change once a Flag is raised: only status, period.end and the status-reason extension may "
             "(raise a new flag instead)")
ED = "Organization/ed"


async def _version(client: httpx.AsyncClient, path: str) -> str:
    return str((await client.get(path)).json()["meta"]["versionId"])


async def test_the_update_verdict_without_the_update(client: httpx.AsyncClient) -> None:
    await borough(client)
    created = await post(client, flag("child-protection-plan", CHILD))
    fid, path = created["id"], f"/fhir/Flag/{created['id']}"
    ended = {**created, "status": "inactive", "period": {**created["period"], "end": "2026-02-01"},
             "extension": [reason()]}
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({**created, "code": {**created["code"], "text": "CP plan"}, "author": {"reference": ZERO19}}, oo(
            rule(f"SF-0237: Flag.author {IMMUTABLE}", "Flag.author"),
            rule(f"SF-0237: Flag.code {IMMUTABLE}", "Flag.code"))),
        ({**created, "status": "inactive"}, oo(rule(
            "SF-0238: A Flag with status 'inactive' carries the status-reason extension "
            "(https://fhir.safeflag.example/StructureDefinition/status-reason) saying why it ended",
            "Flag.extension"))),
        ({**created, "id": "other"}, outcome(
            "invalid", f"SF-0103: Resource id 'other' does not match the URL id '{fid}'", ["Flag.id"])),
        ({k: v for k, v in created.items() if k != "id"}, outcome(
            "invalid", "SF-0103: The resource must carry an id equal to the URL id on update", ["Flag.id"])),
        ({**created, "status": "bogus"}, outcome(
            "code-invalid", "SF-0104: 'bogus' is not in the required value set for Flag.status "
            "(active, entered-in-error, inactive)", ["Flag.status"])),
    ]
    for body, verdict in cases:
        r = await client.post(f"{path}/$validate", json=body)
        assert (r.status_code, r.json()) == (200, verdict), body
        assert await _version(client, path) == "1"  # nothing stored
        put = await client.put(path, json=body)  # the update itself refuses it with the same issues
        assert (put.status_code in (400, 422), put.json()) == (True, verdict), body
    for body in (ended, {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": ended},
                                                                     {"name": "mode", "valueCode": "update"}]}):
        r = await client.post(f"{path}/$validate", json=body)
        assert (r.status_code, r.json()) == (200, OK)
    assert await _version(client, path) == "1"
    assert (await client.put(path, json=ended)).status_code == 200


async def test_the_duplicate_rule_is_checked_as_on_update(client: httpx.AsyncClient) -> None:
    await borough(client)
    first = await post(client, flag("child-protection-plan", CHILD))
    ended = {**first, "status": "inactive", "extension": [reason()]}
    assert (await client.put(f"/fhir/Flag/{first['id']}", json=ended)).status_code == 200
    second = await post(client, flag("child-protection-plan", CHILD))
    again = {**ended, "status": "active", "extension": []}
    again.pop("extension")
    r = await client.post(f"/fhir/Flag/{first['id']}/$validate", json=again)
    assert (r.status_code, r.json()) == (200, oo({
        "severity": "error", "code": "duplicate", "expression": ["Flag.category", "Flag.subject", "Flag.author"],
        "diagnostics": f"SF-0239: Flag/{second['id']} is already an active child-protection-plan flag for {CHILD} by "
                       f"{LA}: end it, or use conditional create (If-None-Exist) to get the existing one"}))


async def test_profile_and_delete_modes(client: httpx.AsyncClient) -> None:
    await borough(client)
    created = await post(client, flag("child-protection-plan", CHILD))
    path = f"/fhir/Flag/{created['id']}"
    # profile: the profiles only, so a changed code is no issue here
    changed = {**created, "code": {**created["code"], "text": "CP plan"}}
    assert (await client.post(f"{path}/$validate?mode=profile", json=changed)).json() == OK
    # delete: Flags are never deleted; a Patient may be (no body needed)
    r = await client.post(f"{path}/$validate?mode=delete")
    assert (r.status_code, r.json()) == (200, outcome(
        "not-supported", "SF-0405: Flag resources are never deleted; change their status instead"))
    r = await client.post(f"{path}/$validate",
                          json={"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]})
    assert (r.status_code, r.json()) == (200, outcome(
        "not-supported", "SF-0405: Flag resources are never deleted; change their status instead"))
    pid = (await post(client, {"resourceType": "Patient", "name": [{"family": "Temp"}]}))["id"]
    assert (await client.post(f"/fhir/Patient/{pid}/$validate?mode=delete")).json() == OK
    assert (await client.get(f"/fhir/Patient/{pid}")).status_code == 200  # still there


async def test_cannot_validate(client: httpx.AsyncClient) -> None:
    await borough(client)
    created = await post(client, flag("child-protection-plan", CHILD))
    path = f"/fhir/Flag/{created['id']}/$validate"
    cases: list[tuple[str, Any, int, dict[str, Any]]] = [
        (f"{path}?mode=create", created, 400, outcome(
            "invalid", f"SF-0116: mode 'create' is not supported by Flag/{created['id']}/$validate (update, delete, "
            "profile; create is validated at Flag/$validate)", ["mode"])),
        (path, {"resourceType": "Patient"}, 400, outcome(
            "invalid", f"SF-0101: Flag/{created['id']}/$validate takes a Flag, not 'Patient'", ["resourceType"])),
        (path, [1], 400, outcome("invalid", "SF-0100: The resource to validate must be a JSON object")),
        ("/fhir/Flag/no-such-flag/$validate", created, 404, outcome(
            "not-found", "SF-0301: Flag/no-such-flag is not known", ["id"])),
        ("/fhir/Nope/x/$validate", {"resourceType": "Nope"}, 404, outcome(
            "not-supported", "SF-0300: Resource type 'Nope' is not supported")),
    ]
    for url, body, status, expected in cases:
        r = await client.post(url, json=body)
        assert (r.status_code, r.json()) == (status, expected), url
    pid = (await post(client, {"resourceType": "Patient", "name": [{"family": "Temp"}]}))["id"]
    assert (await client.delete(f"/fhir/Patient/{pid}")).status_code == 204
    r = await client.post(f"/fhir/Patient/{pid}/$validate", json={"resourceType": "Patient", "id": pid})
    assert (r.status_code, r.json()) == (410, outcome(
        "deleted", f"SF-0302: Patient/{pid} was deleted (version 2)"))


async def test_a_record_the_caller_may_not_read_is_not_found(client: httpx.AsyncClient, auth: Any) -> None:
    await borough(client)
    enc = {"resourceType": "Encounter", "status": "finished",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
           "subject": {"reference": CHILD}, "serviceProvider": {"reference": ED}}
    eid = (await post(client, enc))["id"]
    stranger = auth("health-visitor", org=ZERO19)  # another organisation's Encounter is outside the reach
    r = await client.get(f"/fhir/Encounter/{eid}", headers=stranger)
    missing = (404, outcome("not-found", f"SF-0301: Encounter/{eid} is not known", ["id"]))
    assert (r.status_code, r.json()) == missing
    for mode in ("", "?mode=profile"):
        r = await client.post(f"/fhir/Encounter/{eid}/$validate{mode}", json={**enc, "id": eid}, headers=stranger)
        assert (r.status_code, r.json()) == missing, mode
    # a delete the role may not make of any Encounter is refused alike for every id, existing or not
    refused = (403, outcome("forbidden", "SF-0800: Role health-visitor may not delete Encounter resources"))
    for rid in (eid, "no-such-encounter"):
        r = await client.post(f"/fhir/Encounter/{rid}/$validate?mode=delete", headers=stranger)
        assert (r.status_code, r.json()) == refused, rid


async def test_what_no_one_may_do_is_the_verdict_for_any_id(client: httpx.AsyncClient, auth: Any) -> None:
    """A Flag is never deleted: the verdict is that 405 as an issue of a 200, whether the Flag exists, is
    outside the caller's reach or is not known, exactly as `DELETE` answers it before any lookup."""
    await borough(client)
    fid = (await post(client, flag("child-protection-plan", CHILD)))["id"]
    never = (200, outcome("not-supported", "SF-0405: Flag resources are never deleted; change their status instead"))
    for rid in (fid, "no-such-flag"):
        for headers in ({}, auth("health-visitor", org=ZERO19)):
            r = await client.post(f"/fhir/Flag/{rid}/$validate?mode=delete", headers=headers)
            assert (r.status_code, r.json()) == never, (rid, headers)
    assert (await client.delete("/fhir/Flag/no-such-flag")).json() == never[1]


async def test_a_role_that_may_not_change_it_is_refused_before_the_body(client: httpx.AsyncClient, auth: Any) -> None:
    """The policy's one decision answers before what the body gets wrong: a faulty body is judged as an
    unchanged update, so a role that may not update Patients gets the update's 403, never the body's issues."""
    await borough(client)
    pid = (await post(client, {"resourceType": "Patient", "name": [{"family": "Temp"}]}))["id"]
    hv = auth("health-visitor", org=ZERO19)
    refused = (403, outcome("forbidden", "SF-0800: Role health-visitor may not update Patient resources"))
    for body in ({"resourceType": "Patient", "id": pid}, {"resourceType": "Patient", "id": pid, "gender": 7}):
        r = await client.post(f"/fhir/Patient/{pid}/$validate", json=body, headers=hv)
        assert (r.status_code, r.json()) == refused, body
    r = await client.post(f"/fhir/Patient/{pid}/$validate", json={"resourceType": "Patient", "id": pid, "gender": 7})
    assert (r.status_code, r.json()) == (200, outcome(
        "value", "SF-0109: 7 is not a JSON string (code) at Patient.gender", ["Patient.gender"]))

"""Client-level parity with HAPI FHIR, part 1: create, read, vread, update, delete, history, conditional
create (If-None-Exist and fhirpy's get_or_create), If-Match and transaction Bundles, each test run against
a real `safeflag serve` process and against the HAPI sandbox (tests/hapi/parity.py) with httpx and fhirpy.
Differences are stated with `target.expect(hapi=..., safeflag=...)`; docs/hapi-sandbox.md "Differences from HAPI FHIR"
gives the reasons. https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from tests.hapi.parity import (
    ID_ON_CREATE,
    Server,
    content,
    create,
    flag,
    is_outcome,
    matches,
    organization,
    patient,
    unique,
)
from tests.hapi.support import FHIR_JSON, new_nhs_number

pytestmark = pytest.mark.hapi


async def test_create_read_update_vread_delete(target: Server, http: httpx.AsyncClient) -> None:
    body = patient(new_nhs_number())
    created = await http.post("/Patient", json=body, headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201
    pid = created.json()["id"]
    assert re.fullmatch(ID_ON_CREATE[target.name], pid)
    assert created.headers["location"] == f"{target.base}/Patient/{pid}/_history/1"
    assert created.headers["etag"] == 'W/"1"'
    assert content(created.json()) == {**body, "id": pid}
    assert created.json()["meta"]["versionId"] == "1"

    read = await http.get(f"/Patient/{pid}")
    assert (read.status_code, read.headers["etag"], read.json()) == (200, 'W/"1"', created.json())

    changed = {**body, "id": pid, "gender": "female"}
    updated = await http.put(f"/Patient/{pid}", json=changed, headers={"Content-Type": FHIR_JSON})
    assert (updated.status_code, updated.headers["etag"]) == (200, 'W/"2"')
    assert content(updated.json()) == changed
    # both name the new version in Content-Location (R4 http.html#update allows it); SafeFlag in Location
    # too, as on every write (HAPI's own generic client reads either)
    assert updated.headers["content-location"] == f"{target.base}/Patient/{pid}/_history/2"
    assert updated.headers.get("location") == target.expect(
        hapi=None, safeflag=f"{target.base}/Patient/{pid}/_history/2"
    )

    first = await http.get(f"/Patient/{pid}/_history/1")
    assert (first.status_code, content(first.json())) == (200, {**body, "id": pid})
    assert first.json()["meta"]["versionId"] == "1"

    deleted = await http.delete(f"/Patient/{pid}")
    # HAPI answers 200 with an OperationOutcome ("Successfully deleted 1 resource(s)"); SafeFlag 204, no body.
    assert deleted.status_code == target.expect(hapi=200, safeflag=204)
    assert bool(deleted.content) == target.expect(hapi=True, safeflag=False)
    gone = await http.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert is_outcome(gone.json())
    # the history survives the delete: a vread of the first version still answers
    assert (await http.get(f"/Patient/{pid}/_history/1")).status_code == 200


async def test_update_as_create_with_a_client_id(target: Server, http: httpx.AsyncClient) -> None:
    rid = unique("parity-org")
    body = organization(id=rid)
    first = await http.put(f"/Organization/{rid}", json=body, headers={"Content-Type": FHIR_JSON})
    assert (first.status_code, first.headers["etag"], content(first.json())) == (201, 'W/"1"', body)
    # the same content again: no new version on either server
    again = await http.put(f"/Organization/{rid}", json=body, headers={"Content-Type": FHIR_JSON})
    assert (again.status_code, again.json()["meta"]["versionId"]) == (200, "1")
    # an all-numeric client id: HAPI keeps those for its own sequence (JpaStorageSettings.ClientIdStrategy)
    numeric = str(900_000_000 + int(rid[-6:], 16))
    put = await http.put(
        f"/Organization/{numeric}", json={**body, "id": numeric}, headers={"Content-Type": FHIR_JSON}
    )
    assert put.status_code == target.expect(hapi=400, safeflag=201)


async def test_instance_history(target: Server, http: httpx.AsyncClient) -> None:
    org = await create(http, organization())
    oid = org["id"]
    await http.put(
        f"/Organization/{oid}", json={**content(org), "active": True}, headers={"Content-Type": FHIR_JSON}
    )
    await http.delete(f"/Organization/{oid}")
    history = (await http.get(f"/Organization/{oid}/_history")).json()
    assert (history["resourceType"], history["type"], history["total"]) == ("Bundle", "history", 3)
    methods = [e["request"]["method"] for e in history["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]  # newest first
    versions = [e["resource"]["meta"]["versionId"] for e in history["entry"] if "resource" in e]
    assert versions == ["2", "1"]  # the delete entry carries no resource
    deleted = target.expect(hapi="200", safeflag="204")  # as the DELETE itself answered
    assert [e["response"]["status"].split()[0] for e in history["entry"]] == [deleted, "200", "201"]
    assert history["entry"][1]["fullUrl"] == f"{target.base}/Organization/{oid}"


async def test_conditional_create_with_if_none_exist(target: Server, http: httpx.AsyncClient) -> None:
    nhs = new_nhs_number()
    condition = {"If-None-Exist": f"identifier={NHS_NUMBER_SYSTEM}|{nhs}", "Content-Type": FHIR_JSON}
    first = await http.post("/Patient", json=patient(nhs), headers=condition)
    second = await http.post("/Patient", json=patient(nhs, family="Other"), headers=condition)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["name"][0]["family"] == "Parity"  # the existing one, untouched
    # a plain second create with the same NHS number: HAPI stores a duplicate, SafeFlag refuses it
    # (a live Patient's NHS number is unique)
    duplicate = await http.post("/Patient", json=patient(nhs), headers={"Content-Type": FHIR_JSON})
    assert duplicate.status_code == target.expect(hapi=201, safeflag=409)
    assert is_outcome(duplicate.json()) == target.expect(hapi=False, safeflag=True)
    # two matches: the condition is ambiguous, nothing is created (https://hl7.org/fhir/R4/http.html#ccreate)
    local = {"system": "https://example.org/Id/parity-record", "value": nhs}
    for _ in range(2):
        await create(http, {**patient(nhs), "identifier": [local]})  # no NHS number
    local_condition = {**condition, "If-None-Exist": f"identifier={local['system']}|{nhs}"}
    ambiguous = await http.post("/Patient", json=patient(new_nhs_number()), headers=local_condition)
    assert ambiguous.status_code == 412
    assert is_outcome(ambiguous.json())
    found = (await http.get("/Patient", params={"identifier": f"{local['system']}|{nhs}"})).json()
    assert len(matches(found)) == 2


async def test_fhirpy_get_or_create(target: Server) -> None:
    """fhirpy sends the condition as query parameters of the POST (`POST /Patient?identifier=...`), not as
    If-None-Exist: SafeFlag honours them (contract section 2); HAPI ignores them and creates every time."""
    client = target.fhirpy()
    nhs = new_nhs_number()
    search = client.resources("Patient").search(identifier=f"{NHS_NUMBER_SYSTEM}|{nhs}")
    first, created_first = await search.get_or_create(client.resource("Patient", **_fields(patient(nhs))))
    second, created_second = await search.get_or_create(client.resource("Patient", **_fields(patient(nhs))))
    assert created_first is True
    assert created_second == target.expect(hapi=True, safeflag=False)
    assert (second.id == first.id) == target.expect(hapi=False, safeflag=True)
    assert len(await search.fetch_all()) == target.expect(hapi=2, safeflag=1)


async def test_fhirpy_save_refresh_and_delete(target: Server) -> None:
    client = target.fhirpy()
    org = client.resource("Organization", **_fields(organization()))
    await org.save()
    assert re.fullmatch(ID_ON_CREATE[target.name], org.id)
    org["active"] = True
    await org.save()
    fresh = await client.reference("Organization", org.id).to_resource()
    assert (fresh["active"], fresh["meta"]["versionId"]) == (True, "2")
    await org.delete()
    assert len(await client.resources("Organization").search(_id=org.id).fetch_all()) == 0


async def test_if_match(target: Server, http: httpx.AsyncClient) -> None:
    org = await create(http, organization())
    oid, body = org["id"], content(org)
    ok = await http.put(
        f"/Organization/{oid}",
        json={**body, "active": True},
        headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert (ok.status_code, ok.headers["etag"]) == (200, 'W/"2"')
    stale = await http.put(
        f"/Organization/{oid}",
        json={**body, "active": False},
        headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )
    # FHIR R4 http.html#concurrency: 412; HAPI answers a version conflict 409 (HAPI-0989)
    assert stale.status_code == target.expect(hapi=409, safeflag=412)
    assert is_outcome(stale.json())
    assert (await http.get(f"/Organization/{oid}")).json()["meta"]["versionId"] == "2"
    # If-Match naming an id that does not exist: HAPI ignores the header and creates; SafeFlag refuses,
    # since no current version can match (RFC 9110 13.1.1). HAPI's REST-hook deliveries send exactly this.
    rid = unique("parity-new")
    new = await http.put(
        f"/Organization/{rid}",
        json=organization(id=rid),
        headers={"Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert new.status_code == target.expect(hapi=201, safeflag=412)


async def test_transaction_bundle(target: Server, http: httpx.AsyncClient) -> None:
    nhs = new_nhs_number()
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7f1c2e1a-0000-4000-8000-000000000001",
                "resource": organization(),
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "fullUrl": "urn:uuid:7f1c2e1a-0000-4000-8000-000000000002",
                "resource": patient(nhs),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={NHS_NUMBER_SYSTEM}|{nhs}",
                },
            },
            {
                "resource": flag(
                    "urn:uuid:7f1c2e1a-0000-4000-8000-000000000002",
                    "urn:uuid:7f1c2e1a-0000-4000-8000-000000000001",
                ),
                "request": {"method": "POST", "url": "Flag"},
            },
        ],
    }
    response = await http.post(target.base, json=tx, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["resourceType"], result["type"]) == ("Bundle", "transaction-response")
    assert [e["response"]["status"] for e in result["entry"]] == ["201 Created"] * 3
    locations = [e["response"]["location"] for e in result["entry"]]
    # HAPI answers relative locations ("Organization/12/_history/1"), SafeFlag absolute ones
    prefix = target.expect(hapi="", safeflag=target.base + "/")
    assert all(
        re.fullmatch(re.escape(prefix) + r"(Organization|Patient|Flag)/[^/]+/_history/1", loc)
        for loc in locations
    )
    org_ref, patient_ref, flag_ref = (loc.removeprefix(prefix).rsplit("/_history", 1)[0] for loc in locations)
    stored = (await http.get(f"/{flag_ref}")).json()
    assert (stored["subject"], stored["author"]) == ({"reference": patient_ref}, {"reference": org_ref})

    # the same transaction again: the conditional Patient matches (200), the rest is created anew
    again = (await http.post(target.base, json=tx, headers={"Content-Type": FHIR_JSON})).json()
    statuses = [e["response"]["status"] for e in again["entry"]]
    # SafeFlag refuses a second active flag of the same category, subject and author (contract section 5);
    # the new Organization makes this one a different author, so both servers accept it.
    assert statuses == ["201 Created", "200 OK", "201 Created"]


async def test_failed_transaction_changes_nothing(target: Server, http: httpx.AsyncClient) -> None:
    nhs = new_nhs_number()
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(nhs), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Patient", "id": "no-such-patient-x", "gender": "female"},
                "request": {"method": "PUT", "url": "Patient/no-such-patient-x"},
            },
            {
                "resource": {"resourceType": "Flag", "status": "bogus"},
                "request": {"method": "POST", "url": "Flag"},
            },
        ],
    }
    response = await http.post(target.base, json=tx, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400
    assert is_outcome(response.json())
    found = (await http.get("/Patient", params={"identifier": f"{NHS_NUMBER_SYSTEM}|{nhs}"})).json()
    assert matches(found) == []


def _fields(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "resourceType"}

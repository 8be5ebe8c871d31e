"""A live Patient's NHS number is unique (contract section 4), on both databases: every write that would
give a second live Patient the same NHS number answers 409 naming the Patient that holds it, and changes
nothing; a deleted Patient frees its number; concurrent creates cannot both win."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support.fhir_data import (
    NHS,
    binary_patch,
    count,
    create,
    nhs_query,
    organization,
    patient,
    post,
    req,
    tx,
)

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def taken(holder: str, last4: str = "0018", expression: str = "Patient.identifier[0]") -> dict[str, Any]:
    """The 409 OperationOutcome exactly as the server renders it."""
    return {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "duplicate",
        "diagnostics": f"SF-0415: NHS number ******{last4} is already held by Patient/{holder}, and a live "
                       f"Patient's NHS number is unique: to reach that Patient, create with If-None-Exist: "
                       f"identifier={NHS}|<NHS number> (the existing Patient is returned), or update "
                       f"Patient/{holder}",
        "expression": [expression]}]}


async def nhs_holders(client: httpx.AsyncClient, nhs: str) -> list[str]:
    bundle = (await client.get(f"/fhir/Patient?{nhs_query(nhs)}")).json()
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []))


async def test_a_second_create_is_409_naming_the_holder(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    r = await client.post("/fhir/Patient", json=patient(family="Smyth"))
    assert r.status_code == 409
    assert r.json() == taken(amy)
    assert await count(client, "Patient") == 1
    # the way the 409 names: a conditional create returns the holder
    again = await client.post("/fhir/Patient", json=patient(family="Smyth"),
                              headers={"If-None-Exist": nhs_query("9990000018")})
    assert again.status_code == 200 and again.json()["id"] == amy


async def test_update_as_create_is_409_and_creates_nothing(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    r = await client.put("/fhir/Patient/child-1", json={**patient(), "id": "child-1"})
    assert r.status_code == 409
    assert r.json() == taken(amy)
    assert (await client.get("/fhir/Patient/child-1")).status_code == 404


async def test_update_and_patch_that_take_a_held_number_are_409(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    ben = await create(client, patient("9990000026", "Jones"))
    ben_v1 = (await client.get(f"/fhir/Patient/{ben}")).json()
    r = await client.put(f"/fhir/Patient/{ben}", json={**patient(family="Jones"), "id": ben})
    assert r.status_code == 409
    assert r.json() == taken(amy)
    # Amy's number by JSON Patch (behind another identifier) and by merge patch
    add = [{"op": "replace", "path": "/identifier/0/value", "value": "9990000018"},
           {"op": "add", "path": "/identifier/0", "value": {"system": "https://example.org/mrn", "value": "M1"}}]
    r = await client.patch(f"/fhir/Patient/{ben}", json=add, headers=JSON_PATCH)
    assert r.status_code == 409
    assert r.json() == taken(amy, expression="Patient.identifier[1]")
    merge = {"identifier": [{"system": NHS, "value": "9990000018"}]}
    r = await client.patch(f"/fhir/Patient/{ben}", json=merge, headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 409
    assert r.json() == taken(amy)
    assert (await client.get(f"/fhir/Patient/{ben}")).json() == ben_v1
    assert await nhs_holders(client, "9990000018") == [amy]
    assert await nhs_holders(client, "9990000026") == [ben]


async def test_conditional_update(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    # criteria that miss: the update creates, and the new Patient may not take Amy's number
    r = await client.put("/fhir/Patient?family=Nobody", json=patient(family="Nobody"))
    assert r.status_code == 409
    assert r.json() == taken(amy)
    # criteria that find Amy by her NHS number update her: no conflict with herself
    r = await client.put(f"/fhir/Patient?{nhs_query('9990000018')}", json=patient(family="Smith-Jones"))
    assert r.status_code == 200 and r.json()["id"] == amy and r.json()["meta"]["versionId"] == "2"
    assert await count(client, "Patient") == 1


async def test_a_transaction_entry_fails_the_whole_transaction(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    r = await client.post("/fhir", json=tx(post(organization()), post(patient(family="Smyth"))))
    assert r.status_code == 409
    issue = taken(amy)["issue"][0]
    assert r.json() == {"resourceType": "OperationOutcome", "issue": [{
        **issue, "diagnostics": issue["diagnostics"].replace("SF-0415: ", "SF-0415: Bundle.entry[1] (POST Patient): "),
        "expression": ["Bundle.entry[1].resource.identifier[0]"]}]}
    assert await count(client, "Organization") == 0
    assert await count(client, "Patient") == 1


async def test_two_entries_of_one_transaction_cannot_share_a_number(client: httpx.AsyncClient) -> None:
    first = "urn:uuid:6f1e8f0a-4c1d-4f7b-9a55-0a9b3e2c1d01"
    bundle = tx(post(patient("9990000026"), first), req("PUT", "Patient/child-1",
                                                       {**patient("9990000026"), "id": "child-1"}))
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 409
    diagnostics = r.json()["issue"][0]["diagnostics"]
    assert diagnostics.startswith("SF-0415: Bundle.entry[1] (PUT Patient/child-1): NHS number ******0026 is "
                                  "already held by Patient/")
    assert await count(client, "Patient") == 0


async def test_a_batch_entry_fails_alone(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    r = await client.post("/fhir", json=tx(post(patient(family="Smyth")), post(patient("9990000026")), kind="batch"))
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert entries[0] == {"response": {"status": "409 Conflict", "outcome": taken(amy)}}
    assert entries[1]["response"]["status"] == "201 Created"
    assert await nhs_holders(client, "9990000018") == [amy]
    assert await nhs_holders(client, "9990000026") == [entries[1]["resource"]["id"]]


async def test_a_patch_entry_of_a_batch_fails_alone(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    ben = await create(client, patient("9990000026", "Jones"))
    change = [{"op": "replace", "path": "/identifier/0/value", "value": "9990000018"}]
    r = await client.post("/fhir", json=tx(req("PATCH", f"Patient/{ben}", binary_patch(change)),
                                           req("PATCH", f"Patient/{ben}", binary_patch(change)), kind="batch"))
    assert r.json()["entry"] == [{"response": {"status": "409 Conflict", "outcome": taken(amy)}}] * 2


async def test_a_deleted_patient_frees_its_number_and_comes_back_only_without_it(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    assert (await client.delete(f"/fhir/Patient/{amy}")).status_code == 204
    again = await create(client, patient(family="Smith"))  # the same child, recorded again
    revived = {**patient(), "id": amy}
    r = await client.put(f"/fhir/Patient/{amy}", json=revived)
    assert r.status_code == 409
    assert r.json() == taken(again)
    assert (await client.get(f"/fhir/Patient/{amy}")).status_code == 410
    r = await client.put(f"/fhir/Patient/{amy}", json={**patient("9990000026"), "id": amy})
    assert r.status_code == 201


async def test_a_changed_number_frees_the_old_one(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    r = await client.put(f"/fhir/Patient/{amy}", json={**patient("9990000026"), "id": amy})
    assert r.status_code == 200
    ben = await create(client, patient(family="Jones"))  # 9990000018 is free again
    assert await nhs_holders(client, "9990000018") == [ben]
    r = await client.post("/fhir/Patient", json=patient("9990000026", "Smyth"))
    assert r.status_code == 409
    assert r.json() == taken(amy, "0026")


async def test_only_the_nhs_number_system_counts(client: httpx.AsyncClient) -> None:
    amy = await create(client, patient())
    other = {**patient("9990000034"), "identifier": [{"system": "https://example.org/mrn", "value": "9990000018"},
                                                      {"system": NHS, "value": "9990000034"}]}
    ben = await create(client, other)  # another system's identifier with the same digits is no NHS number
    assert (await client.put(f"/fhir/Patient/{ben}", json={**other, "id": ben, "gender": "male"})).status_code == 200
    r = await client.post("/fhir/Patient", json=patient("9990000034", "Jones"))
    assert r.status_code == 409
    assert r.json() == taken(ben, "0034", "Patient.identifier[0]")
    assert await nhs_holders(client, "9990000018") == [amy]


async def test_concurrent_creates_one_wins(client: httpx.AsyncClient) -> None:
    """Ten creates of the same NHS number at once (on PostgreSQL truly concurrent, each on its own
    connection): the database lets exactly one through; the others wait for it and answer 409."""
    responses = await asyncio.gather(*(client.post("/fhir/Patient", json=patient(family=f"Racer{i}"))
                                       for i in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9
    winner = next(r.json()["id"] for r in responses if r.status_code == 201)
    assert all(r.json() == taken(winner) for r in responses if r.status_code == 409)
    assert await count(client, "Patient") == 1
    assert await nhs_holders(client, "9990000018") == [winner]

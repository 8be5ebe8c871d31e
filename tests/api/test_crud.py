"""Create, read, vread, update, delete and history on both databases."""

from __future__ import annotations

import httpx

from tests.conftest import FHIR

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(nhs: str = "9990000018", family: str = "Smith") -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS, "value": nhs}],
        "name": [{"family": family, "given": ["Amy"]}],
        "birthDate": "2020-02-03",
    }


async def test_create_then_read(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", json=patient())
    assert r.status_code == 201
    body = r.json()
    pid = body["id"]
    assert body["meta"] == {"versionId": "1", "lastUpdated": "2026-01-05T09:00:01.000+00:00"}
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"{FHIR}/Patient/{pid}/_history/1"
    assert r.headers["last-modified"] == "Mon, 05 Jan 2026 09:00:01 GMT"
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    got = await client.get(f"/fhir/Patient/{pid}")
    assert got.status_code == 200
    assert got.json() == body


async def test_update_delete_history(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/fhir/Patient", json=patient())).json()["id"]
    upd = await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Jones"), "id": pid},
                           headers={"If-Match": 'W/"1"'})
    assert upd.status_code == 200
    assert upd.json()["meta"]["versionId"] == "2"
    stale = await client.put(f"/fhir/Patient/{pid}", json={**patient(family="Brown"), "id": pid},
                             headers={"If-Match": "1"})
    assert stale.status_code == 412
    assert stale.json() == {
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": "conflict",
            "diagnostics": f"SF-0413: If-Match version 1 does not match the current version 2 of Patient/{pid}",
        }],
    }
    gone = await client.delete(f"/fhir/Patient/{pid}")
    assert gone.status_code == 204
    read = await client.get(f"/fhir/Patient/{pid}")
    assert read.status_code == 410
    assert read.json()["issue"][0]["code"] == "deleted"
    v1 = await client.get(f"/fhir/Patient/{pid}/_history/1")
    assert v1.status_code == 200 and v1.json()["name"][0]["family"] == "Smith"
    hist = (await client.get(f"/fhir/Patient/{pid}/_history")).json()
    assert hist["type"] == "history" and hist["total"] == 3
    assert [e["response"]["status"] for e in hist["entry"]] == ["204 No Content", "200 OK", "201 Created"]
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]

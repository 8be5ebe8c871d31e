"""`Prefer` (https://hl7.org/fhir/R4/http.html#ops, #search): `return=minimal | representation |
OperationOutcome` on create, update, patch and Bundle entries; `handling=strict | lenient` on search,
alone and inside a Bundle."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fhir_data import (
    create,
    created_response,
    instant,
    location,
    organization,
    outcome,
    patient,
    post,
    req,
    tx,
    unidentified,
)

HEADERS = ("etag", "last-modified", "location")


def info(text: str) -> dict:
    return outcome("informational", f"SF-0001: {text}", severity="information")


async def test_create_honours_return(client: httpx.AsyncClient) -> None:
    minimal = await client.post(
        "/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"}
    )  # tick 1
    pid = minimal.headers["location"].split("/")[-3]
    assert (minimal.status_code, minimal.content) == (201, b"")
    assert "content-type" not in minimal.headers
    assert [minimal.headers[h] for h in HEADERS] == [
        'W/"1"',
        "Mon, 05 Jan 2026 09:00:01 GMT",
        location("Patient", pid, 1),
    ]
    oo = await client.post(
        "/fhir/Patient", json=patient("9990000026"), headers={"Prefer": 'return="OperationOutcome"'}
    )  # tick 2
    oid = oo.headers["location"].split("/")[-3]
    assert (oo.status_code, oo.json()) == (201, info(f"Patient/{oid} created"))
    assert oo.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert oo.headers["etag"] == 'W/"1"'
    full = await client.post(
        "/fhir/Patient", json=patient("9990000034"), headers={"Prefer": "return=representation"}
    )
    assert full.status_code == 201 and full.json()["resourceType"] == "Patient"
    default = await client.post(
        "/fhir/Patient", json=patient("9990000042"), headers={"Prefer": "return=bogus"}
    )
    assert default.status_code == 201 and default.json()["resourceType"] == "Patient"


async def test_update_and_patch_honour_return(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    r = await client.put(
        f"/fhir/Patient/{pid}", json={**patient(family="B"), "id": pid}, headers={"Prefer": "return=minimal"}
    )  # tick 2
    assert (r.status_code, r.content, r.headers["etag"]) == (200, b"", 'W/"2"')
    assert r.headers["last-modified"] == "Mon, 05 Jan 2026 09:00:02 GMT"
    r = await client.put(
        f"/fhir/Patient/{pid}",
        json={**patient(family="C"), "id": pid},
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert (r.status_code, r.json()) == (200, info(f"Patient/{pid} processed"))
    r = await client.patch(
        f"/fhir/Patient/{pid}",
        json=[{"op": "add", "path": "/active", "value": True}],
        headers={"Prefer": "return=minimal", "Content-Type": "application/json-patch+json"},
    )
    assert (r.status_code, r.content, r.headers["etag"]) == (200, b"", 'W/"4"')
    r = await client.patch(
        f"/fhir/Patient/{pid}",
        json={"active": False},
        headers={"Prefer": "return=OperationOutcome, handling=strict"},
    )
    assert (r.status_code, r.json()) == (200, info(f"Patient/{pid} processed"))
    assert (await client.get(f"/fhir/Patient/{pid}")).json()["meta"]["versionId"] == "5"


async def test_conditional_create_match_honours_return(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    r = await client.post(
        "/fhir/Patient",
        json=patient(),
        headers={"If-None-Exist": "identifier=9990000018", "Prefer": "return=minimal"},
    )
    assert (r.status_code, r.content, r.headers["location"]) == (200, b"", location("Patient", pid, 1))


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_bundle_entries_honour_return(client: httpx.AsyncClient, kind: str) -> None:
    pid = await create(client, patient())  # tick 1
    bundle = tx(
        post(organization()),
        req("PUT", f"Patient/{pid}", {**patient(family="B"), "id": pid}),
        req("GET", f"Patient/{pid}"),
        kind=kind,
    )
    r = await client.post("/fhir", json=bundle, headers={"Prefer": "return=minimal"})  # ticks 2, 3
    org, upd, read = r.json()["entry"]
    oid = org["response"]["location"].split("/")[-3]
    assert org == {"response": created_response("Organization", oid, 2)}
    assert upd == {"response": {"status": "200 OK", "location": location("Patient", pid, 2), "etag": 'W/"2"',
                                "lastModified": instant(3)}}
    assert read["resource"]["id"] == pid  # a read is answered with the resource whatever the preference
    r = await client.post(
        "/fhir", json=tx(post(organization("Two")), kind=kind), headers={"Prefer": "return=OperationOutcome"}
    )  # tick 4
    entry = r.json()["entry"][0]
    oid = entry["response"]["location"].split("/")[-3]
    outcome_ = info(f"Organization/{oid} created")
    assert entry == {"response": {**created_response("Organization", oid, 4), "outcome": outcome_}}


async def test_handling_strict_and_lenient_on_search(client: httpx.AsyncClient) -> None:
    lenient = await client.get("/fhir/Patient?shoe-size=9", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    assert [unidentified(e) for e in lenient.json()["entry"]] == [
        {
            "resource": outcome(
                "not-supported",
                "SF-0400: Unknown search parameter 'shoe-size' for Patient was ignored",
                ["shoe-size"],
                severity="warning",
            ),
            "search": {"mode": "outcome"},
        }
    ]
    strict = await client.get("/fhir/Patient?shoe-size=9", headers={"Prefer": "handling=strict"})
    assert (strict.status_code, strict.json()) == (
        400,
        outcome("not-supported", "SF-0400: Unknown search parameter 'shoe-size' for Patient", ["shoe-size"]),
    )
    bundle = tx(req("GET", "Patient?shoe-size=9"), kind="batch")
    r = await client.post("/fhir", json=bundle, headers={"Prefer": "handling=strict"})
    assert r.json()["entry"] == [{"response": {"status": "400 Bad Request", "outcome": strict.json()}}]
    r = await client.post("/fhir", json=bundle)
    in_batch = r.json()["entry"][0]["resource"]["entry"]
    assert [unidentified(e) for e in in_batch] == [unidentified(e) for e in lenient.json()["entry"]]

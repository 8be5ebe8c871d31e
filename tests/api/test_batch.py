"""Batch Bundles (https://hl7.org/fhir/R4/http.html#transaction) on both databases: entries run
independently, each in its own savepoint; a failure is that entry's response, the rest is kept."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import FHIR
from tests.support.fhir_data import (
    count,
    create,
    flag,
    instant,
    location,
    nhs_query,
    organization,
    outcome,
    patient,
    post,
    req,
    tx,
)


def batch(*entries: dict[str, Any]) -> dict[str, Any]:
    return tx(*entries, kind="batch")


async def test_failures_are_reported_per_entry_and_the_rest_is_committed(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    oid = await create(client, organization())  # tick 2
    bundle = batch(
        post(organization("Ward 9")),
        post(patient("9990000019")),
        req("GET", "Patient/unknown"),
        req("PUT", f"Patient/{pid}", {**patient(family="Late"), "id": pid}, ifMatch="3"),
        req("DELETE", f"Flag/{pid}"),
        req("PUT", f"Patient/{pid}", {**patient(family="Jones"), "id": pid}),
        req("DELETE", f"Organization/{oid}"),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    body = r.json()
    new_org = body["entry"][0]["resource"]["id"]
    updated = (await client.get(f"/fhir/Patient/{pid}")).json()
    assert body == {
        "resourceType": "Bundle",
        "id": body["id"],
        "type": "batch-response",
        "entry": [
            {
                "fullUrl": f"{FHIR}/Organization/{new_org}",
                "resource": {
                    "resourceType": "Organization",
                    "id": new_org,
                    "meta": {"versionId": "1", "lastUpdated": instant(3)},
                    "name": "Ward 9",
                },
                "response": {
                    "status": "201 Created",
                    "location": location("Organization", new_org, 1),
                    "etag": 'W/"1"',
                    "lastModified": instant(3),
                },
            },
            {
                "response": {
                    "status": "422 Unprocessable Entity",
                    "outcome": outcome(
                        "business-rule",
                        "SF-0201: '9990000019' is not a valid NHS number "
                        "(ten digits with a Modulus 11 check digit)",
                        ["Patient.identifier[0].value"],
                    ),
                }
            },
            {
                "response": {
                    "status": "404 Not Found",
                    "outcome": outcome("not-found", "SF-0301: Patient/unknown is not known", ["id"]),
                }
            },
            {
                "response": {
                    "status": "412 Precondition Failed",
                    "outcome": outcome(
                        "conflict",
                        f"SF-0413: If-Match version 3 does not match the current version 1 of Patient/{pid}",
                    ),
                }
            },
            {
                "response": {
                    "status": "405 Method Not Allowed",
                    "outcome": outcome(
                        "not-supported",
                        "SF-0405: Flag resources are never deleted; change their status instead",
                    ),
                }
            },
            {
                "fullUrl": f"{FHIR}/Patient/{pid}",
                "resource": updated,
                "response": {"status": "200 OK", "location": location("Patient", pid, 2), "etag": 'W/"2"',
                             "lastModified": instant(4)},
            },
            {"response": {"status": "204 No Content", "etag": 'W/"2"', "lastModified": instant(5)}},
        ],
    }
    assert updated["name"][0]["family"] == "Jones"
    assert await count(client, "Organization") == 1
    assert await count(client, "Patient") == 1


async def test_entries_run_in_bundle_order(client: httpx.AsyncClient) -> None:
    bundle = batch(
        req("GET", f"Patient?{nhs_query('9990000018')}&_summary=count"),
        post(patient()),
        req("GET", f"Patient?{nhs_query('9990000018')}&_summary=count"),
    )
    before, _, after = (await client.post("/fhir", json=bundle)).json()["entry"]
    assert (before["resource"]["total"], after["resource"]["total"]) == (0, 1)


async def test_a_failed_entry_leaves_the_database_usable(client: httpx.AsyncClient) -> None:
    """On PostgreSQL a failed statement poisons the transaction; the per-entry SAVEPOINT prevents that."""
    pid = await create(client, patient())
    bundle = batch(
        req("PUT", f"Patient?{nhs_query('9990000018')}&shoe=9", patient(family="Nope")),
        req("GET", "Patient?_count=many"),
        post(patient("9990000026")),
        req("GET", f"Patient/{pid}"),
    )
    r = await client.post("/fhir", json=bundle)
    assert [e["response"]["status"] for e in r.json()["entry"]] == [
        "400 Bad Request",
        "400 Bad Request",
        "201 Created",
        "200 OK",
    ]
    assert r.json()["entry"][0]["response"]["outcome"] == outcome(
        "not-supported", "SF-0400: Unknown search parameter 'shoe' for Patient", ["shoe"]
    )
    assert await count(client, "Patient") == 2


async def test_batch_entries_do_not_resolve_each_others_placeholders(client: httpx.AsyncClient) -> None:
    bundle = batch(post(organization(), "urn:uuid:o1"), post(flag("urn:uuid:p1", "urn:uuid:o1")))
    first, second = (await client.post("/fhir", json=bundle)).json()["entry"]
    assert first["response"]["status"] == "201 Created"
    assert second == {
        "response": {
            "status": "400 Bad Request",
            "outcome": {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "not-found",
                        "diagnostics": "SF-0629: Reference 'urn:uuid:p1' names no entry of this Bundle",
                        "expression": ["Flag.subject.reference"],
                    },
                    {
                        "severity": "error",
                        "code": "not-found",
                        "diagnostics": "SF-0629: Reference 'urn:uuid:o1' names no entry of this Bundle",
                        "expression": ["Flag.author.reference"],
                    },
                ],
            },
        }
    }


async def test_conditional_interactions_in_a_batch(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    bundle = batch(
        post(patient(family="Dup"), ifNoneExist=f"Patient?{nhs_query('9990000018')}"),
        post(flag(f"Patient?{nhs_query('9990000018')}", "Organization/x")),
        post(flag(f"Patient?{nhs_query('9990000093')}", "Organization/x")),
        req("DELETE", f"Patient?{nhs_query('9990000093')}"),
    )
    dup, fl, missing, delete_none = (await client.post("/fhir", json=bundle)).json()["entry"]
    assert dup["response"]["status"] == "200 OK" and dup["resource"]["id"] == pid
    assert fl["resource"]["subject"] == {"reference": f"Patient/{pid}"}
    assert missing["response"] == {
        "status": "404 Not Found",
        "outcome": outcome(
            "not-found",
            f"SF-0304: Conditional reference 'Patient?{nhs_query('9990000093')}' matches no resource",
        ),
    }
    assert delete_none == {"response": {"status": "204 No Content"}}


async def test_batch_does_not_reject_two_entries_on_one_resource(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    bundle = batch(
        req("PUT", f"Patient/{pid}", {**patient(family="A"), "id": pid}),
        req("PUT", f"Patient/{pid}", {**patient(family="B"), "id": pid}, ifMatch='W/"2"'),
    )
    first, second = (await client.post("/fhir", json=bundle)).json()["entry"]
    assert (first["response"]["etag"], second["response"]["etag"]) == ('W/"2"', 'W/"3"')

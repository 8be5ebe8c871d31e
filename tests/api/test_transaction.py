"""Transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction) on both databases: all or
nothing, processing order, one change per resource, GET/HEAD and PATCH entries, the envelope checks,
and the exact OperationOutcome naming the failing entry. References: test_transaction_references.py."""

from __future__ import annotations

import httpx

from tests.conftest import FHIR
from tests.support.fhir_data import (
    binary_patch,
    count,
    create,
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


async def test_processing_order_is_delete_post_put_get(client: httpx.AsyncClient) -> None:
    keep = await create(client, patient("9990000026", "Keep"))  # tick 1
    gone = await create(client, patient("9990000034", "Gone"))  # tick 2
    bundle = tx(
        req("GET", f"Patient?{nhs_query('9990000018')}"),
        req("PUT", f"Patient/{keep}", {**patient("9990000026", "Kept"), "id": keep}),
        post(patient("9990000018", "New")),
        req("DELETE", f"Patient/{gone}"),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    entries = r.json()["entry"]
    new_id = entries[2]["resource"]["id"]
    # DELETE at tick 3, POST at tick 4, PUT at tick 5; the GET ran last and sees the POST
    assert entries[3] == {
        "response": {"status": "204 No Content", "etag": 'W/"2"', "lastModified": instant(3)}
    }
    assert entries[2]["response"]["lastModified"] == instant(4)
    assert entries[1]["response"] == {"status": "200 OK", "location": location("Patient", keep, 2), "etag": 'W/"2"',
                                      "lastModified": instant(5)}
    assert entries[1]["resource"]["name"][0]["family"] == "Kept"
    search = entries[0]
    assert search["response"] == {"status": "200 OK"}
    assert search["resource"]["type"] == "searchset"
    assert [e["resource"]["id"] for e in search["resource"]["entry"]] == [new_id]
    assert (await client.get(f"/fhir/Patient/{gone}")).status_code == 410


async def test_a_failing_entry_rolls_everything_back(client: httpx.AsyncClient) -> None:
    existing = await create(client, patient("9990000026"))
    bundle = tx(
        req("DELETE", f"Patient/{existing}"),
        post(organization(), "urn:uuid:o1"),
        post(patient("9990000019", managingOrganization={"reference": "urn:uuid:o1"})),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 422
    assert r.json() == outcome(
        "business-rule",
        "SF-0201: Bundle.entry[2] (POST Patient): '9990000019' is not a valid NHS number "
        "(ten digits with a Modulus 11 check digit)",
        ["Bundle.entry[2].resource.identifier[0].value"],
    )
    assert await count(client, "Organization") == 0
    assert (await client.get(f"/fhir/Patient/{existing}")).json()["meta"]["versionId"] == "1"
    history = (await client.get("/fhir/_history")).json()
    assert history["total"] == 1


async def test_failure_keeps_its_own_status_and_names_the_entry(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    stale = tx(
        post(organization()),
        req("PUT", f"Patient/{pid}", {**patient(family="X"), "id": pid}, ifMatch='W/"7"'),
    )
    r = await client.post("/fhir", json=stale)
    assert r.status_code == 412
    assert r.json() == outcome(
        "conflict",
        f"SF-0413: Bundle.entry[1] (PUT Patient/{pid}): If-Match version 7 does not match the current "
        f"version 1 of Patient/{pid}",
        ["Bundle.entry[1]"],
    )
    missing = await client.post("/fhir", json=tx(post(organization()), req("GET", "Patient/nope")))
    assert missing.status_code == 404
    assert missing.json() == outcome(
        "not-found",
        "SF-0301: Bundle.entry[1] (GET Patient/nope): Patient/nope is not known",
        ["Bundle.entry[1]", "id"],
    )
    bad = await client.post("/fhir", json=tx(post({"resourceType": "Patient", "birthDate": "soon"})))
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.birthDate"]
    assert await count(client, "Organization") == 0


async def test_two_entries_changing_one_resource_are_rejected(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    literal = tx(req("PUT", f"Patient/{pid}", {**patient(), "id": pid}), req("DELETE", f"Patient/{pid}"))
    r = await client.post("/fhir", json=literal)
    assert r.status_code == 400
    assert r.json() == outcome(
        "duplicate",
        f"SF-0628: Patient/{pid} is changed by Bundle.entry[0] and Bundle.entry[1]; a transaction may change "
        "a resource only once",
        ["Bundle.entry[1].request.url"],
    )
    via_search = tx(
        req("PUT", f"Patient/{pid}", {**patient(family="A"), "id": pid}),
        req("PUT", f"Patient?{nhs_query('9990000018')}", patient(family="B")),
    )
    r = await client.post("/fhir", json=via_search)
    assert r.status_code == 400
    assert r.json()["issue"][0]["diagnostics"] == (
        f"SF-0628: Bundle.entry[1] (PUT Patient?{nhs_query('9990000018')}): Patient/{pid} is changed by "
        "Bundle.entry[0] and Bundle.entry[1]; a transaction may change a resource only once"
    )
    assert (await client.get(f"/fhir/Patient/{pid}")).json()["meta"]["versionId"] == "1"
    dup_url = tx(post(organization(), "urn:uuid:x"), post(organization(), "urn:uuid:x"))
    r = await client.post("/fhir", json=dup_url)
    assert r.status_code == 400
    assert r.json() == outcome(
        "duplicate",
        "SF-0627: fullUrl 'urn:uuid:x' is used by Bundle.entry[0] and Bundle.entry[1]",
        ["Bundle.entry[1].fullUrl"],
    )


async def test_read_entries_and_if_none_match(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    bundle = tx(
        req("GET", f"Patient/{pid}"),
        req("GET", f"Patient/{pid}", ifNoneMatch='W/"1"'),
        req("GET", f"Patient/{pid}/_history/1"),
        req("GET", f"Patient/{pid}/_history"),
        req("HEAD", f"Patient/{pid}"),
        req("GET", f"{FHIR}/Patient?_id={pid}&_summary=count"),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    read, not_modified, vread, history, head, search = r.json()["entry"]
    stored = (await client.get(f"/fhir/Patient/{pid}")).json()
    headers = {"etag": 'W/"1"', "lastModified": instant(1)}
    assert read == {
        "fullUrl": f"{FHIR}/Patient/{pid}",
        "resource": stored,
        "response": {"status": "200 OK", **headers},
    }
    assert vread == read
    assert not_modified == {"response": {"status": "304 Not Modified", **headers}}
    assert head == {"response": {"status": "200 OK", **headers}}
    assert history["resource"]["type"] == "history" and history["resource"]["total"] == 1
    assert search["resource"]["total"] == 1


async def test_patch_entry_carries_a_binary(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    ops = [{"op": "replace", "path": "/name/0/family", "value": "Patched"}]
    merge = {"gender": "female"}
    bundle = tx(req("PATCH", f"Patient/{pid}", binary_patch(ops), ifMatch='W/"1"'))
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    assert r.json()["entry"][0]["resource"]["name"][0]["family"] == "Patched"
    r = await client.post(
        "/fhir",
        json=tx(
            req(
                "PATCH",
                f"Patient?{nhs_query('9990000018')}",
                binary_patch(merge, "application/merge-patch+json"),
            )
        ),
    )
    assert r.json()["entry"][0]["resource"]["gender"] == "female"
    assert r.json()["entry"][0]["response"]["etag"] == 'W/"3"'
    fhirpath = {"resourceType": "Parameters", "parameter": [{"name": "operation"}]}
    r = await client.post("/fhir", json=tx(req("PATCH", f"Patient/{pid}", fhirpath)))
    assert r.status_code == 415
    assert r.json() == outcome(
        "not-supported",
        f"SF-0125: Bundle.entry[0] (PATCH Patient/{pid}): FHIRPath Patch is not supported; send "
        "application/json-patch+json or application/merge-patch+json",
        ["Bundle.entry[0]"],
    )
    bad = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "not base64!"}
    r = await client.post("/fhir", json=tx(req("PATCH", f"Patient/{pid}", bad)))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0]", "Binary.data"]


async def test_envelope_faults_are_all_reported_at_once(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir", json=patient())
    assert r.status_code == 400
    assert r.json() == outcome(
        "invalid", "SF-0600: POST [base] takes a Bundle of type batch or transaction", ["resourceType"]
    )
    r = await client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"})
    assert r.status_code == 400
    assert r.json() == outcome(
        "value", "SF-0621: Bundle.type must be batch or transaction, not 'collection'", ["Bundle.type"]
    )
    entries = [
        "not an object",
        {"resource": patient()},
        {"request": {"method": "FETCH", "url": "Patient"}},
        {"request": {"method": "GET"}},
        {"request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "PUT", "url": "Patient"}, "resource": patient()},
        {"request": {"method": "GET", "url": "http://elsewhere.example/fhir/Patient/1"}},
        {"request": {"method": "DELETE", "url": "Patient/1/_history/1"}},
        {"request": {"method": "GET", "url": "Patient/bad id"}},
        {
            "request": {"method": "PUT", "url": "Patient/1", "ifMatch": 1},
            "resource": {**patient(), "id": "1"},
        },
    ]
    r = await client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 400
    e = "Bundle.entry"
    assert r.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": f"SF-0622: {e}[0] must be an object",
                "expression": [f"{e}[0]"],
            },
            {
                "severity": "error",
                "code": "required",
                "diagnostics": f"SF-0623: {e}[1] has no request",
                "expression": [f"{e}[1].request"],
            },
            {
                "severity": "error",
                "code": "value",
                "diagnostics": f"SF-0624: {e}[2].request.method must be one of "
                "GET, HEAD, POST, PUT, PATCH, DELETE, not 'FETCH'",
                "expression": [f"{e}[2].request.method"],
            },
            {
                "severity": "error",
                "code": "required",
                "diagnostics": f"SF-0625: {e}[3].request.url is missing",
                "expression": [f"{e}[3].request.url"],
            },
            {
                "severity": "error",
                "code": "required",
                "diagnostics": f"SF-0626: {e}[4] (POST Patient) needs a resource",
                "expression": [f"{e}[4].resource"],
            },
            {
                "severity": "error",
                "code": "value",
                "diagnostics": f"SF-0625: {e}[5].request.url 'Patient' is not a valid URL for PUT",
                "expression": [f"{e}[5].request.url"],
            },
            {
                "severity": "error",
                "code": "value",
                "diagnostics": f"SF-0625: {e}[6].request.url "
                "'http://elsewhere.example/fhir/Patient/1' is not a valid URL for GET",
                "expression": [f"{e}[6].request.url"],
            },
            {
                "severity": "error",
                "code": "value",
                "diagnostics": f"SF-0625: {e}[7].request.url "
                "'Patient/1/_history/1' is not a valid URL for DELETE",
                "expression": [f"{e}[7].request.url"],
            },
            {
                "severity": "error",
                "code": "value",
                "diagnostics": f"SF-0625: {e}[8].request.url 'Patient/bad id' is not a valid URL for GET",
                "expression": [f"{e}[8].request.url"],
            },
            {
                "severity": "error",
                "code": "value",
                "diagnostics": f"SF-0631: {e}[9].request.ifMatch must be a string",
                "expression": [f"{e}[9].request.ifMatch"],
            },
        ],
    }


async def test_empty_transaction_and_absolute_urls(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction"})
    assert r.status_code == 200
    assert r.json() == {"resourceType": "Bundle", "id": r.json()["id"], "type": "transaction-response"}
    r = await client.post(
        "/fhir",
        json=tx({"resource": organization(), "request": {"method": "POST", "url": f"{FHIR}/Organization"}}),
    )
    assert r.json()["entry"][0]["response"]["status"] == "201 Created"


async def test_unsupported_type_and_server_written_types(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir", json=tx(req("GET", "Observation?code=x")))
    assert r.status_code == 404
    assert r.json() == outcome(
        "not-supported",
        "SF-0300: Bundle.entry[0] (GET Observation?code=x): Resource type 'Observation' is not supported",
        ["Bundle.entry[0]"],
    )
    audit = {"resourceType": "AuditEvent"}
    r = await client.post("/fhir", json=tx(post(audit)))
    assert r.status_code == 405
    assert r.json() == outcome(
        "not-supported",
        "SF-0406: Bundle.entry[0] (POST AuditEvent): AuditEvent is written "
        "by the server only; it cannot be created through the API",
        ["Bundle.entry[0]"],
    )


async def test_capability_statement_claims_batch_and_transaction(client: httpx.AsyncClient) -> None:
    rest = (await client.get("/fhir/metadata")).json()["rest"][0]
    assert {"code": "transaction"} in rest["interaction"] and {"code": "batch"} in rest["interaction"]
    flag_caps = next(r for r in rest["resource"] if r["type"] == "Flag")
    assert flag_caps["conditionalDelete"] == "not-supported"
    assert {"code": "delete"} not in flag_caps["interaction"]
    patient_caps = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert (
        patient_caps["conditionalCreate"],
        patient_caps["conditionalUpdate"],
        patient_caps["conditionalDelete"],
        patient_caps["updateCreate"],
        patient_caps["versioning"],
    ) == (True, True, "single", True, "versioned-update")

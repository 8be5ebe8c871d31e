"""`POST /fhir/{type}/$validate` (https://hl7.org/fhir/R4/resource-operation-validate.html): 200 with an
OperationOutcome whether or not the resource is valid (as HAPI FHIR answers since 6.6); 4xx only when
validation cannot be performed. Nothing is stored."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.fhir_data import NHS, flag, outcome, patient

OK = outcome("informational", "SF-0002: Validation successful: no errors found", severity="information")
VALIDATE_DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-validate"


def params(resource: Any, **extra: str) -> dict[str, Any]:
    parameter: list[dict[str, Any]] = [{"name": "resource", "resource": resource}]
    for name, value in extra.items():
        parameter.append({"name": name, "valueCode" if name == "mode" else "valueUri": value})
    return {"resourceType": "Parameters", "parameter": parameter}


async def test_valid_resource(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient/$validate", json=patient())
    assert (r.status_code, r.json()) == (200, OK)
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    search = (await client.get("/fhir/Patient")).json()
    assert search["total"] == 0  # validation stores nothing


async def test_invalid_resource_is_200_with_the_issues(client: httpx.AsyncClient) -> None:
    bad = {**flag("Patient/1", "Organization/1"), "status": "bogus"}
    r = await client.post("/fhir/Flag/$validate", json=bad)
    assert (r.status_code, r.json()) == (200, outcome(
        "code-invalid", "SF-0104: 'bogus' is not in the required value set for Flag.status "
        "(active, entered-in-error, inactive)", ["Flag.status"]))


async def test_business_rules_are_reported_too(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient/$validate", json=patient(nhs="9990000019"))
    assert (r.status_code, r.json()) == (200, outcome(
        "business-rule", "SF-0201: '9990000019' is not a valid NHS number (ten digits with a Modulus 11 check digit)",
        ["Patient.identifier[0].value"]))


async def test_parameters_with_resource_and_mode(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Flag/$validate", json=params(flag("Patient/1", "Organization/1"), mode="create"))
    assert (r.status_code, r.json()) == (200, OK)
    r = await client.post("/fhir/Flag/$validate", json=params(flag("Patient/1", "Organization/1"), mode="update"))
    assert (r.status_code, r.json()) == (200, outcome("required", "SF-0103: An update needs the resource id",
                                                      ["Flag.id"]))
    with_id = {**flag("Patient/1", "Organization/1"), "id": "f1"}
    r = await client.post("/fhir/Flag/$validate?mode=update", json=with_id)
    assert (r.status_code, r.json()) == (200, OK)


async def test_profile_parameter(client: httpx.AsyncClient) -> None:
    core = "http://hl7.org/fhir/StructureDefinition/Patient"
    assert (await client.post(f"/fhir/Patient/$validate?profile={core}", json=patient())).json() == OK
    assert (await client.post("/fhir/Patient/$validate", json=params(patient(), profile=core))).json() == OK
    other = "https://example.org/fhir/StructureDefinition/other"
    r = await client.post("/fhir/Patient/$validate", json=params(patient(), profile=other))
    assert (r.status_code, r.json()) == (400, outcome(
        "not-supported", f"SF-0114: Unknown profile '{other}'", ["profile"]))


async def test_cannot_validate(client: httpx.AsyncClient) -> None:
    cases: list[tuple[str, Any, int, dict[str, Any]]] = [
        ("/fhir/Flag/$validate", {"resourceType": "Patient"}, 400, outcome(
            "invalid", "SF-0101: Flag/$validate takes a Flag, not 'Patient'", ["resourceType"])),
        ("/fhir/Flag/$validate", [1], 400, outcome(
            "invalid", "SF-0100: The resource to validate must be a JSON object")),
        ("/fhir/Flag/$validate", {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "create"}]},
         400, outcome("invalid", "SF-0116: The Parameters carry no 'resource' to validate", ["Parameters.parameter"])),
        ("/fhir/Flag/$validate", {"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]},
         400, outcome("invalid", "SF-0116: Unexpected $validate parameter 'x'", ["Parameters.parameter[0]"])),
        ("/fhir/Flag/$validate?mode=delete", {"resourceType": "Flag"}, 400, outcome(
            "invalid", "SF-0116: mode 'delete' is not supported by Flag/$validate (create, update, profile; delete "
            "needs an instance)", ["mode"])),
        ("/fhir/Nope/$validate", {"resourceType": "Nope"}, 404, outcome(
            "not-supported", "SF-0300: Resource type 'Nope' is not supported")),
    ]
    for path, body, status, expected in cases:
        r = await client.post(path, json=body)
        assert (r.status_code, r.json()) == (status, expected), path


async def test_body_errors_are_the_usual_ones(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient/$validate", content=b"<Patient/>", headers={"content-type": "application/xml"})
    assert (r.status_code, r.json()) == (415, outcome("not-supported",
                                                      "SF-0011: XML is not supported; send application/fhir+json"))
    r = await client.post("/fhir/Patient/$validate", content=b"{", headers={"content-type": "application/fhir+json"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["diagnostics"].startswith("SF-0012: The request body is not valid JSON")


async def test_capability_statement_lists_validate_for_every_type(client: httpx.AsyncClient) -> None:
    resources = (await client.get("/fhir/metadata")).json()["rest"][0]["resource"]
    # every type this server stores; the read-only conformance types (fhir_profiles/) have no $validate
    read_only = ("StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter", "ConceptMap", "OperationDefinition")
    assert len([e for e in resources if e["type"] not in read_only]) == 14
    for entry in resources:
        if entry["type"] not in read_only:
            assert {"name": "validate", "definition": VALIDATE_DEFINITION} in entry["operation"], entry["type"]
        else:
            assert "operation" not in entry, entry["type"]


async def test_valid_resource_with_an_nhs_number_identifier_reference(client: httpx.AsyncClient) -> None:
    body = {**flag("Patient/1", "Organization/1"), "subject": {"identifier": {"system": NHS, "value": "9990000026"}}}
    assert (await client.post("/fhir/Flag/$validate", json=body)).json() == OK

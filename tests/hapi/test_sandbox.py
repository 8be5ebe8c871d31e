"""The HAPI FHIR sandbox is the real HAPI JPA R4 server: its CapabilityStatement, and the basic REST
interactions SafeFlag's parity tests build on (create, read, search by NHS number, referential integrity
on write). https://hl7.org/fhir/R4/http.html"""

from __future__ import annotations

import re

import httpx
import pytest

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from tests.hapi.support import FHIR_JSON, new_nhs_number, nhs_identifier

pytestmark = pytest.mark.hapi


async def test_metadata_is_hapi_8_8_r4(hapi: httpx.AsyncClient, hapi_base_url: str) -> None:
    response = await hapi.get("/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json;charset=UTF-8"
    cs = response.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["software"] == {"name": "HAPI FHIR Server", "version": "8.8.0"}
    assert cs["implementation"] == {"description": "SafeFlag HAPI FHIR R4 sandbox", "url": hapi_base_url}
    assert cs["format"] == [
        "application/fhir+xml", "xml", "application/fhir+json", "json", "application/x-turtle", "ttl"
    ]
    (rest,) = cs["rest"]
    assert rest["mode"] == "server"
    types = {r["type"] for r in rest["resource"]}
    # Every type SafeFlag emits or receives is served by the JPA server (146 R4 resource types in all).
    assert {"Patient", "Flag", "Encounter", "Communication", "Task", "AuditEvent", "Bundle",
            "Subscription", "StructureDefinition", "CodeSystem", "ValueSet"} <= types
    assert len(types) == 146
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"read", "vread", "update", "patch", "delete", "history-instance", "create", "search-type"} <= {
        i["code"] for i in patient["interaction"]
    }
    assert "validate" in {op["name"] for op in patient.get("operation", [])}


async def test_patient_create_read_search_by_nhs_number(hapi: httpx.AsyncClient, hapi_base_url: str) -> None:
    nhs = new_nhs_number()
    body = {
        "resourceType": "Patient",
        "identifier": [nhs_identifier(nhs)],
        "name": [{"family": "Smith", "given": ["Amy"]}],
        "birthDate": "2020-02-03",
    }
    created = await hapi.post("/Patient", json=body, headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201
    patient = created.json()
    pid = patient["id"]
    # HAPI's server-assigned ids are sequential numbers by default (JpaStorageSettings.IdStrategyEnum).
    assert re.fullmatch(r"[0-9]+", pid)
    assert created.headers["location"] == f"{hapi_base_url}/Patient/{pid}/_history/1"
    assert created.headers["etag"] == 'W/"1"'
    # HAPI stamps meta.source with the request id (JpaStorageSettings.StoreMetaSourceInformation default).
    assert patient == {
        **body,
        "id": pid,
        "meta": {
            "versionId": "1",
            "lastUpdated": patient["meta"]["lastUpdated"],
            "source": "#" + created.headers["x-request-id"],
        },
    }

    read = await hapi.get(f"/Patient/{pid}")
    assert read.status_code == 200
    assert read.headers["etag"] == 'W/"1"'
    assert read.json() == patient

    found = await hapi.get("/Patient", params={"identifier": f"{NHS_NUMBER_SYSTEM}|{nhs}"})
    assert found.status_code == 200
    bundle = found.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert bundle["entry"] == [
        {"fullUrl": f"{hapi_base_url}/Patient/{pid}", "resource": patient, "search": {"mode": "match"}}
    ]

    # The value alone (no system) matches too; a neighbouring test-range number does not.
    by_value = (await hapi.get("/Patient", params={"identifier": nhs})).json()
    assert [e["resource"]["id"] for e in by_value["entry"]] == [pid]
    neighbour = f"{NHS_NUMBER_SYSTEM}|{new_nhs_number()}"
    other = (await hapi.get("/Patient", params={"identifier": neighbour})).json()
    assert other["total"] == 0
    assert "entry" not in other


async def test_write_with_a_dangling_reference_is_rejected(hapi: httpx.AsyncClient) -> None:
    """hapi-sandbox.md: referential integrity is enforced on write (a Flag's subject must exist)."""
    flag = {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "Child protection plan"},
        "subject": {"reference": "Patient/no-such-child"},
    }
    response = await hapi.post("/Flag", json=flag, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400
    outcome = response.json()
    (issue,) = outcome.pop("issue")
    assert outcome == {"resourceType": "OperationOutcome"}
    diagnostics = issue.pop("diagnostics")
    assert issue == {"severity": "error", "code": "processing"}
    # HAPI names whichever search-parameter path it indexed the reference under first, and that order
    # varies from run to run (Flag.subject is also indexed as Flag.subject.where(resolve() is Patient)).
    assert diagnostics in {
        "HAPI-1094: Resource Patient/no-such-child not found, specified in path: Flag.subject",
        "HAPI-1094: Resource Patient/no-such-child not found, specified in path: "
        "Flag.subject.where(resolve() is Patient)",
    }

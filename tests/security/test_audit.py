"""AuditEvent shapes (IHE BALP patterns) for every interaction and for refused attempts; each one
validates with fhir.resources (R4B) and with our own validation pipeline, and is stored and found by
`patient`, `agent`, `entity` and `date` searches."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from app.context import AppContext
from app.fhir.resources import structure_errors
from app.fhir.validation import validate_resource
from app.security.audit import INTERACTIONS, audit_for, outcome_for_status, patients_of
from app.security.labels import CONFIDENTIALITY
from app.security.principal import Principal
from app.security.scopes import ScopeSet

WHEN = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)
HV = Principal(sub="hv-7", role="health-visitor", scopes=ScopeSet.parse("user/*.cruds"),
               issuer="http://127.0.0.1:8080/auth", org="Organization/zero19", fhir_user="PractitionerRole/hv-7",
               token_id="jti-1")
EPR = Principal(sub="ed-epr", role="system", scopes=ScopeSet.parse("system/Encounter.c"),
                issuer="http://127.0.0.1:8080/auth", org="Organization/ed", client_id="ed-epr", token_id="jti-2")
FLAG = {"resourceType": "Flag", "id": "f1", "subject": {"reference": "Patient/child-1"},
        "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}}


def valid(event: dict[str, Any]) -> None:
    assert structure_errors("AuditEvent", event) == []
    validate_resource("AuditEvent", event)


@pytest.mark.parametrize("interaction", sorted(INTERACTIONS))
def test_every_interaction_validates(interaction: str) -> None:
    event = audit_for(interaction=interaction, principal=HV, recorded=WHEN, resource_type="Flag", res_id="f1",
                      version_id=2, resource=FLAG, request_id="req-1", client_address="10.0.0.7",
                      query="patient=Patient/child-1" if interaction.startswith("search") else None)
    valid(event)
    assert event["action"] == INTERACTIONS[interaction]
    assert event["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction,
                                 "display": interaction}]


def test_read_shape() -> None:
    event = audit_for(interaction="read", principal=HV, recorded=WHEN, resource_type="Flag", res_id="f1",
                      version_id=2, resource=FLAG, request_id="req-1", client_address="10.0.0.7",
                      server="http://127.0.0.1:8080/fhir")
    assert event == {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "Restful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read", "display": "read"}],
        "action": "R",
        "recorded": "2026-01-05T09:30:00.123+00:00",
        "outcome": "0",
        "outcomeDesc": "Success",
        "agent": [
            {"type": {"coding": [
                {"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes", "code": "UserOauthAgent",
                 "display": "User OAuth Agent participant"},
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP",
                 "display": "information recipient"}]},
             "role": [{"coding": [{"system": "https://fhir.safeflag.example/CodeSystem/user-role",
                                   "code": "health-visitor"}]}],
             "who": {"identifier": {"system": "http://127.0.0.1:8080/auth", "value": "hv-7"},
                     "reference": "PractitionerRole/hv-7"},
             "altId": "hv-7", "requestor": True, "policy": ["jti-1"]},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "PROV",
                                  "display": "healthcare provider"}]},
             "who": {"reference": "Organization/zero19"}, "requestor": False},
            {"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110152",
                                  "display": "Destination Role ID"}]},
             "who": {"identifier": {"system": "https://fhir.safeflag.example/Id/client-id", "value": "unknown"}},
             "requestor": False, "network": {"address": "10.0.0.7", "type": "2"}},
            {"type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110153",
                                  "display": "Source Role ID"}]},
             "who": {"display": "http://127.0.0.1:8080/fhir"}, "requestor": False,
             "network": {"address": "http://127.0.0.1:8080/fhir", "type": "5"}},
        ],
        "source": {"site": "SafeFlag", "observer": {"display": "http://127.0.0.1:8080/fhir"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": [
            {"what": {"reference": "Flag/f1/_history/2"},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2",
                      "display": "System Object"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4",
                      "display": "Domain Resource"},
             "securityLabel": [{"system": CONFIDENTIALITY, "code": "R"}]},
            {"what": {"reference": "Patient/child-1"},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                      "display": "Person"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}},
            {"type": {"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
                      "code": "XrequestId"},
             "what": {"identifier": {"value": "req-1"}}},
        ],
    }


def test_search_records_the_query_and_each_patient() -> None:
    query = "Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018&status=active"
    event = audit_for(interaction="search-type", principal=HV, recorded=WHEN, query=query,
                      patients=["Patient/child-1", "Patient/child-2", "Patient/child-1"])
    valid(event)
    assert event["action"] == "E"
    kinds = [(e["role"]["code"], e.get("what", {}).get("reference")) for e in event["entity"]]
    assert kinds == [("1", "Patient/child-1"), ("1", "Patient/child-2"), ("24", None)]
    q = event["entity"][2]
    assert base64.b64decode(q["query"]).decode() == query and q["description"] == query
    # client and server swap roles for a query (BALP): the client sends it, the server receives it
    assert [a["type"]["coding"][0]["code"] for a in event["agent"][2:]] == ["110153", "110152"]


def test_denied_attempt_by_a_system_client() -> None:
    event = audit_for(interaction="create", principal=EPR, recorded=WHEN, outcome="4",
                      outcome_desc="Role system may not create Flag resources", resource_type="Flag")
    valid(event)
    assert (event["outcome"], event["outcomeDesc"], event["action"]) == (
        "4", "Role system may not create Flag resources", "C")
    user, org, client, server = event["agent"]
    assert user["who"] == {"identifier": {"system": "http://127.0.0.1:8080/auth", "value": "ed-epr"}}
    assert user["type"]["coding"][1]["code"] == "AGNT"
    assert org["who"] == {"reference": "Organization/ed"}
    assert client["who"]["identifier"]["value"] == "ed-epr"
    assert (client["type"]["coding"][0]["code"], server["type"]["coding"][0]["code"]) == ("110150", "custodian")
    assert "entity" not in event  # nothing was written, no id to point at


def test_unauthenticated_attempt() -> None:
    event = audit_for(interaction="read", principal=None, recorded=WHEN, outcome="4", outcome_desc="no token",
                      resource_type="Flag", res_id="f1")
    valid(event)
    assert event["agent"][0] == {
        "type": {"coding": [{"system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes",
                             "code": "UserOauthAgent"}]},
        "who": {"display": "unauthenticated"}, "requestor": True}


def test_patients_of_resources() -> None:
    assert patients_of("Patient", {"id": "p1"}) == ["Patient/p1"]
    assert patients_of("Task", {"for": {"reference": "Patient/c"}}) == ["Patient/c"]
    assert patients_of("RelatedPerson", {"patient": {"reference": "Patient/c"}}) == ["Patient/c"]
    assert patients_of("Communication", {"subject": {"reference": "Group/g"}}) == []
    assert patients_of("Organization", {"id": "o"}) == []
    assert [outcome_for_status(s) for s in (200, 201, 304, 401, 403, 404, 422, 500)] == [
        "0", "0", "0", "4", "4", "4", "4", "8"]


async def test_stored_events_are_found_by_patient_agent_entity_and_date(clean_ctx: AppContext) -> None:
    from app.fhir.search.params import parse_search
    from app.search.executor import run_search
    from app.storage.repository import Repository

    read = audit_for(interaction="read", principal=HV, recorded=WHEN, resource_type="Flag", res_id="f1",
                     version_id=1, resource=FLAG)
    denied = audit_for(interaction="read", principal=EPR, recorded=WHEN, outcome="4", outcome_desc="refused",
                       resource_type="Encounter", res_id="e1", resource={"subject": {"reference": "Patient/child-2"}})
    async with clean_ctx.sessionmaker() as session, session.begin():
        repo = Repository(session, clock=clean_ctx.clock, ids=clean_ctx.ids, indexer=clean_ctx.indexer)  # type: ignore[arg-type]
        await repo.create("AuditEvent", read)
        await repo.create("AuditEvent", denied)
        await repo.flush()
    base = clean_ctx.settings.fhir_base

    async def found(query: list[tuple[str, str]]) -> int:
        async with clean_ctx.sessionmaker() as session:
            return len((await run_search(session, parse_search("AuditEvent", query, base=base))).matches)

    assert await found([("patient", "Patient/child-1")]) == 1
    assert await found([("agent", "PractitionerRole/hv-7")]) == 1
    assert await found([("agent", "Organization/ed")]) == 1
    assert await found([("entity", "Encounter/e1")]) == 1
    assert await found([("date", "2026-01-05")]) == 2
    assert await found([("outcome", "4")]) == 1

"""What the CapabilityStatement claims, checked against what the server does, on both databases:
every operation at its level with a `definition` that resolves (ours are served as OperationDefinitions,
the others are HL7's and the Backport IG's canonicals), every search parameter's `definition` (R4's
own SearchParameter, shared ones included, or ours, served), and `searchRevInclude` listing only
reverse includes that can match, each shown to work against stored data."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.fhir.search.definitions import SUPPORTED_TYPES, params_for
from app.fhir.search.targets import target_types
from app.security import audit_trail

OURS = "https://fhir.safeflag.example/"
CORE_SP = "http://hl7.org/fhir/SearchParameter/"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
VALIDATE = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}


async def metadata(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/fhir/metadata")
    assert r.status_code == 200, r.text
    rest: dict[str, Any] = r.json()["rest"][0]
    return rest


async def test_every_operation_is_listed_at_its_level(client: httpx.AsyncClient) -> None:
    rest = await metadata(client)
    assert rest["operation"] == [
        {"name": "governance-report", "definition": OURS + "OperationDefinition/governance-report"}]
    ops = {r["type"]: r.get("operation") for r in rest["resource"]}
    special = {
        "Patient": [{"name": "safeguarding-summary",
                     "definition": OURS + "OperationDefinition/Patient-safeguarding-summary"}, VALIDATE],
        "DocumentReference": [{"name": "qa-queue", "definition": OURS + "OperationDefinition/qa-queue"}, VALIDATE],
        "Subscription": [
            {"name": "events", "definition": BACKPORT + "backport-subscription-events"},
            {"name": "get-ws-binding-token", "definition": BACKPORT + "backport-subscription-get-ws-binding-token"},
            {"name": "status", "definition": BACKPORT + "backport-subscription-status"},
            VALIDATE,
        ],
    }
    for rtype in SUPPORTED_TYPES:
        assert ops.pop(rtype) == special.get(rtype, [VALIDATE]), rtype
    assert ops == {t: None for t in ("StructureDefinition", "CodeSystem", "ValueSet", "SearchParameter",
                                     "ConceptMap", "OperationDefinition")}


async def test_our_operation_definitions_are_served(client: httpx.AsyncClient) -> None:
    rest = await metadata(client)
    listed = {(None, op["name"], op["definition"]) for op in rest["operation"]} | {
        (r["type"], op["name"], op["definition"]) for r in rest["resource"] for op in r.get("operation", [])}
    ours = {(t, n, d) for t, n, d in listed if d.startswith(OURS)}
    assert {d for _t, _n, d in ours} == {OURS + "OperationDefinition/" + i
                                         for i in ("governance-report", "Patient-safeguarding-summary", "qa-queue")}
    for rtype, name, url in sorted(ours, key=str):
        bundle = (await client.get("/fhir/OperationDefinition", params={"url": url})).json()
        [entry] = bundle["entry"]
        od = entry["resource"]
        assert (od["url"], od["code"], od["kind"], od["status"]) == (url, name, "operation", "active")
        assert od["system"] is (rtype is None)
        assert od.get("resource") == ([rtype] if rtype else None)
        assert (await client.get(f"/fhir/OperationDefinition/{od['id']}")).json() == od
        assert [e["resource"]["id"] for e in (await client.get(
            f"/fhir/OperationDefinition?code={name}")).json()["entry"]] == [od["id"]]
    # each is invoked at the level it declares: the summary on an instance, the queue on the type
    summary = (await client.get("/fhir/OperationDefinition/Patient-safeguarding-summary")).json()
    assert (summary["type"], summary["instance"]) == (False, True)
    queue = (await client.get("/fhir/OperationDefinition/qa-queue")).json()
    assert (queue["type"], queue["instance"]) == (True, False)
    r = await client.put("/fhir/OperationDefinition/qa-queue", json=queue)
    assert r.status_code == 405


async def test_every_search_parameter_has_its_definition(client: httpx.AsyncClient) -> None:
    rest = await metadata(client)
    own: set[str] = set()
    for resource in rest["resource"]:
        for sp in resource["searchParam"]:
            assert sp["definition"].startswith((CORE_SP, OURS + "SearchParameter/")), (resource["type"], sp)
            if sp["definition"].startswith(OURS):
                own.add(sp["definition"])
                [found] = (await client.get("/fhir/SearchParameter", params={"url": sp["definition"]})).json()["entry"]
                assert (found["resource"]["code"], found["resource"]["type"]) == (sp["name"], sp["type"])
                assert resource["type"] in found["resource"]["base"]
    assert own == {OURS + "SearchParameter/" + i for i in (
        "flag-status", "flag-category", "flag-code", "relatedperson-family", "relatedperson-given")}
    by_type = {r["type"]: {sp["name"]: sp["definition"] for sp in r["searchParam"]} for r in rest["resource"]}
    # R4's own ids, shared definitions included (https://hl7.org/fhir/R4/searchparameter-registry.html)
    assert {(t, n): by_type[t][n] for t, n in [
        ("Flag", "_id"), ("Flag", "_lastUpdated"), ("Flag", "patient"), ("Flag", "subject"), ("Flag", "date"),
        ("Patient", "family"), ("Patient", "identifier"), ("Communication", "patient"), ("Task", "patient"),
        ("DocumentReference", "type"), ("Organization", "address"), ("PractitionerRole", "email"),
        ("AuditEvent", "_security"), ("CodeSystem", "url"), ("OperationDefinition", "code"),
    ]} == {
        ("Flag", "_id"): CORE_SP + "Resource-id", ("Flag", "_lastUpdated"): CORE_SP + "Resource-lastUpdated",
        ("Flag", "patient"): CORE_SP + "clinical-patient", ("Flag", "subject"): CORE_SP + "Flag-subject",
        ("Flag", "date"): CORE_SP + "clinical-date", ("Patient", "family"): CORE_SP + "individual-family",
        ("Patient", "identifier"): CORE_SP + "Patient-identifier",
        ("Communication", "patient"): CORE_SP + "Communication-patient",
        ("Task", "patient"): CORE_SP + "Task-patient", ("DocumentReference", "type"): CORE_SP + "clinical-type",
        ("Organization", "address"): CORE_SP + "Organization-address",
        ("PractitionerRole", "email"): CORE_SP + "individual-email",
        ("AuditEvent", "_security"): CORE_SP + "Resource-security", ("CodeSystem", "url"): CORE_SP + "conformance-url",
        ("OperationDefinition", "code"): CORE_SP + "OperationDefinition-code",
    }


async def test_rev_includes_list_only_what_can_match(client: httpx.AsyncClient) -> None:
    rest = await metadata(client)
    rev = {r["type"]: r.get("searchRevInclude") for r in rest["resource"] if r["type"] in SUPPORTED_TYPES}
    listed = {x for values in rev.values() for x in values}
    # references to types not served here, or to canonicals, can never match anything
    for never in ("Organization:endpoint", "PractitionerRole:location", "PractitionerRole:service",
                  "PractitionerRole:endpoint", "Encounter:location", "Encounter:episode-of-care",
                  "Encounter:reason-reference", "Encounter:based-on", "Communication:instantiates-canonical"):
        assert never not in listed, never
    assert rev["Patient"] == [
        "Patient:link", "CareTeam:patient", "CareTeam:subject", "CareTeam:participant", "RelatedPerson:patient",
        "Encounter:patient", "Encounter:subject", "Flag:patient", "Flag:subject", "Communication:patient",
        "Communication:subject", "Communication:recipient", "Communication:sender", "Communication:based-on",
        "Communication:part-of", "DocumentReference:patient", "DocumentReference:subject", "DocumentReference:author",
        "DocumentReference:related", "Task:owner", "Task:focus", "Task:patient", "Task:subject", "Task:requester",
        "Task:based-on", "AuditEvent:patient", "AuditEvent:entity", "AuditEvent:agent", "AuditEvent:source"]
    assert rev["Binary"] == ["Communication:based-on", "Communication:part-of", "DocumentReference:related",
                             "Task:focus", "Task:subject", "Task:based-on", "AuditEvent:entity"]
    # the Flag profile holds subject to a Patient: Flag:subject can never find an Organization
    assert "Flag:subject" not in rev["Organization"]
    r = await client.post("/fhir/Flag/$validate", json={
        "resourceType": "Flag", "status": "active", "subject": {"reference": "Organization/o1"},
        "author": {"reference": "Organization/o1"},
        "category": [{"coding": [{"system": OURS + "CodeSystem/safeguarding-flag-category",
                                  "code": "child-protection-plan"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "342191000000101"}]}})
    assert (r.status_code, r.json()) == (200, {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "structure", "expression": ["Flag.subject"],
        "diagnostics": "SF-0607: Flag.subject: a reference to Organization is not allowed here (allowed: Patient) "
                       "(profile https://fhir.safeflag.example/StructureDefinition/safeguarding-flag)"}]})


def _with_reference(rtype: str, path: tuple[str, ...], ref: str) -> dict[str, Any]:
    """The smallest stored `rtype` holding the reference `ref` at `path`."""
    node: Any = {"reference": ref}
    for seg in reversed(path):
        node = {seg: node}
    return {"resourceType": rtype, **node}


@pytest.mark.parametrize("target", SUPPORTED_TYPES)
async def test_each_listed_rev_include_finds_stored_data(
    client: httpx.AsyncClient, clean_ctx: AppContext, target: str
) -> None:
    listed = next(x["searchRevInclude"] for x in (await metadata(client))["resource"] if x["type"] == target)
    expected = [f"{s}:{p.name}" for s in SUPPORTED_TYPES for p in params_for(s).values()
                if p.type == "reference" and target in target_types(p)]
    assert listed == expected
    sources: dict[str, str] = {}
    async with clean_ctx.unit_of_work() as svc:  # stored as they are, to reach every listed element
        if target == "AuditEvent":  # read and searched from the audit trail
            tid = (await audit_trail.record(svc.repo, {"resourceType": target}, org=None,
                                            now=clean_ctx.clock.now())).id
        else:
            tid = (await svc.repo.create(target, {"resourceType": target}, res_id="t1", validated=True)).id
        for value in listed:
            stype, name = value.split(":")
            param = params_for(stype)[name]
            content = _with_reference(stype, param.paths[0], f"{target}/{tid}")
            stored = (await audit_trail.record(svc.repo, content, org=None, now=clean_ctx.clock.now(),
                                              base=clean_ctx.settings.fhir_base)
                      if stype == "AuditEvent" else await svc.repo.create(stype, content, validated=True))
            sources[value] = f"{stype}/{stored.id}"
    for value in listed:
        r = await client.get(f"/fhir/{target}", params={"_id": tid, "_revinclude": value})
        assert r.status_code == 200, r.text
        found = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json()["entry"]
                 if e["search"]["mode"] == "include"]
        assert sources[value] in found, (target, value, found)

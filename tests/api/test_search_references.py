"""Reference search on both databases (https://hl7.org/fhir/R4/search.html#reference, #chaining):
Type/id, bare id, absolute URLs, `:Type`, `:identifier` (contract section 2), chains, `:missing`."""

from __future__ import annotations

import httpx

from tests.api.test_search_fixtures import (
    NHS,
    ODS,
    communication,
    create,
    flag,
    ids,
    organization,
    patient,
    put,
)
from tests.conftest import FHIR


async def _world(client: httpx.AsyncClient) -> dict[str, str]:
    await put(client, {**organization("Leeds City Council", "LA1"), "id": "la"})
    await put(client, {**organization("Leeds General Infirmary ED", "RR801"), "id": "ed"})
    w = {
        "amy": (await create(client, patient("9990000018", "Smith", "Amy", birth="2020-02-03")))["id"],
        "ben": (await create(client, patient("9990000026", "Jones", "Ben", birth="2016-05-05")))["id"],
    }
    # by reference; by NHS number only (an EPR that knows nothing else); by absolute URL under our base
    w["f_ref"] = (await create(client, flag(f"Patient/{w['amy']}", "Organization/la")))["id"]
    w["f_ident"] = (await create(client, flag(
        {"type": "Patient", "identifier": {"system": NHS, "value": "9990000018"}}, "Organization/la", "fgm")))["id"]
    w["f_url"] = (await create(client, flag(f"{FHIR}/Patient/{w['ben']}", "Organization/ed", "looked-after-child")))["id"]
    return w


async def test_reference_forms(client: httpx.AsyncClient) -> None:
    w = await _world(client)
    assert await ids(client, f"/fhir/Flag?patient=Patient/{w['amy']}") == [w["f_ref"]]
    assert await ids(client, f"/fhir/Flag?patient={w['amy']}") == [w["f_ref"]]
    assert await ids(client, f"/fhir/Flag?subject=Patient/{w['ben']}") == [w["f_url"]]
    assert await ids(client, f"/fhir/Flag?patient={FHIR}/Patient/{w['ben']}") == [w["f_url"]]
    assert await ids(client, f"/fhir/Flag?subject:Patient={w['ben']}") == [w["f_url"]]
    assert await ids(client, f"/fhir/Flag?subject:Organization={w['ben']}") == []
    assert await ids(client, f"/fhir/Flag?subject:Patient=Organization/{w['ben']}") == []
    assert await ids(client, f"/fhir/Flag?patient=Patient/{w['amy']},Patient/{w['ben']}") == [w["f_ref"], w["f_url"]]
    assert await ids(client, "/fhir/Flag?author=Organization/la") == [w["f_ref"], w["f_ident"]]
    assert await ids(client, "/fhir/Flag?author=Organization/la&patient=Patient/" + w["ben"]) == []
    assert await ids(client, "/fhir/Flag?author=https://elsewhere.example/fhir/Organization/la") == []


async def test_identifier_modifier_finds_both_kinds_of_reference(client: httpx.AsyncClient) -> None:
    w = await _world(client)
    both = [w["f_ref"], w["f_ident"]]
    assert await ids(client, f"/fhir/Flag?patient:identifier={NHS}|9990000018") == both
    assert await ids(client, "/fhir/Flag?patient:identifier=9990000018") == both
    assert await ids(client, f"/fhir/Flag?subject:identifier={NHS}|9990000026") == [w["f_url"]]
    assert await ids(client, f"/fhir/Flag?patient:identifier={NHS}|9990000026,{NHS}|9990000018") == [
        w["f_ref"], w["f_ident"], w["f_url"]]
    assert await ids(client, "/fhir/Flag?patient:identifier=https://other.example|9990000018") == []
    assert await ids(client, f"/fhir/Flag?author:identifier={ODS}|RR801") == [w["f_url"]]
    assert await ids(client, f"/fhir/Flag?patient:identifier={NHS}|9990000018&category=fgm") == [w["f_ident"]]


async def test_chains(client: httpx.AsyncClient) -> None:
    w = await _world(client)
    # a chain follows references, so the identifier-only reference does not take part
    assert await ids(client, f"/fhir/Flag?patient.identifier={NHS}|9990000018") == [w["f_ref"]]
    assert await ids(client, f"/fhir/Flag?subject:Patient.identifier={NHS}|9990000026") == [w["f_url"]]
    assert await ids(client, "/fhir/Flag?patient.name=smi") == [w["f_ref"]]
    assert await ids(client, "/fhir/Flag?patient.birthdate=lt2018") == [w["f_url"]]
    assert await ids(client, "/fhir/Flag?patient.gender:missing=true") == [w["f_ref"], w["f_url"]]
    assert await ids(client, "/fhir/Flag?author.name=leeds general") == [w["f_url"]]
    assert await ids(client, f"/fhir/Flag?author:Organization.identifier={ODS}|LA1") == [w["f_ref"], w["f_ident"]]
    assert await ids(client, "/fhir/Flag?author._id=ed") == [w["f_url"]]
    # two levels: Tasks about Communications about Amy
    comm = await create(client, communication(f"Patient/{w['amy']}", "Organization/la"))
    task = await create(client, {"resourceType": "Task", "status": "requested", "intent": "order",
                                 "focus": {"reference": f"Communication/{comm['id']}"},
                                 "for": {"reference": f"Patient/{w['amy']}"}})
    assert await ids(client, f"/fhir/Task?focus:Communication.patient.identifier={NHS}|9990000018") == [task["id"]]
    assert await ids(client, f"/fhir/Task?focus:Communication.patient.identifier={NHS}|9990000026") == []
    # a deleted target no longer satisfies a chain; the reference itself still matches
    assert (await client.delete(f"/fhir/Patient/{w['ben']}")).status_code == 204
    assert await ids(client, f"/fhir/Flag?patient.identifier={NHS}|9990000026") == []
    assert await ids(client, f"/fhir/Flag?patient:identifier={NHS}|9990000026") == []
    assert await ids(client, f"/fhir/Flag?patient=Patient/{w['ben']}") == [w["f_url"]]


async def test_missing_references(client: httpx.AsyncClient) -> None:
    w = await _world(client)
    enc = await create(client, {"resourceType": "Encounter", "status": "finished",
                                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                "subject": {"reference": f"Patient/{w['amy']}"}})
    with_enc = flag(f"Patient/{w['amy']}", "Organization/ed", "risk-to-self")
    with_enc["encounter"] = {"reference": f"Encounter/{enc['id']}"}
    f_enc = (await create(client, with_enc))["id"]
    assert await ids(client, "/fhir/Flag?encounter:missing=false") == [f_enc]
    assert await ids(client, "/fhir/Flag?encounter:missing=true") == [w["f_ref"], w["f_ident"], w["f_url"]]
    assert await ids(client, f"/fhir/Flag?encounter=Encounter/{enc['id']}") == [f_enc]
    assert await ids(client, "/fhir/Flag?encounter.status=finished") == [f_enc]


async def test_communication_filters_as_subscriptions_use_them(client: httpx.AsyncClient) -> None:
    w = await _world(client)
    role = await put(client, {"resourceType": "PractitionerRole", "id": "hv1",
                              "organization": {"reference": "Organization/la"}})
    c1 = await create(client, communication(f"Patient/{w['amy']}", "PractitionerRole/hv1",
                                            sent="2026-01-05T10:00:00Z"))
    c2 = await create(client, communication(f"Patient/{w['ben']}", "PractitionerRole/hv1", "did-not-wait"))
    await create(client, communication(f"Patient/{w['amy']}", "Organization/la"))
    assert await ids(client, f"/fhir/Communication?recipient=PractitionerRole/{role['id']}") == [c1["id"], c2["id"]]
    assert await ids(client, f"/fhir/Communication?recipient=PractitionerRole/hv1&patient=Patient/{w['amy']}") == [
        c1["id"]]
    assert await ids(client, "/fhir/Communication?recipient:PractitionerRole.organization=Organization/la") == [
        c1["id"], c2["id"]]
    assert await ids(client, "/fhir/Communication?category=did-not-wait&recipient=hv1") == [c2["id"]]

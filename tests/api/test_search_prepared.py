"""Prepared searches (app/search/prepared.py) on both databases: the same matches, in the same
order, as the generic search with the values written in; and the templates that cannot be prepared."""

from __future__ import annotations

import httpx
import pytest

from app.context import AppContext
from app.fhir.search.params import parse_search
from app.search.executor import run_search
from app.search.prepared import prepared
from tests.conftest import BASE_URL
from tests.support.fhir_data import create, organization, patient

NHS = "https://fhir.nhs.uk/Id/nhs-number"
CAT = "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category"

TEMPLATES = [
    ("Flag", [("subject:identifier", f"{NHS}|:nhs"), ("status", "active"), ("category", f"{CAT}|:category")]),
    ("Flag", [("subject:identifier", f"{NHS}|:a,{NHS}|:b")]),
    ("Flag", [("subject", "Patient/:child"), ("status", ":status")]),
    ("Flag", [("patient.identifier", f"{NHS}|:nhs")]),
    ("Patient", [("_id", ":id")]),
    ("Patient", [("identifier", ":system|:value")]),
]


SNOMED = {"child-protection-plan": "342191000000101", "looked-after-child": "764841000000100"}
CANON = "https://fhir.safeflag.example"


def _flag(subject: dict[str, str], author: str, category: str, status: str = "active") -> dict[str, object]:
    body: dict[str, object] = {
        "resourceType": "Flag",
        "status": status,
        "category": [{"coding": [{"system": CAT, "code": category}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": SNOMED[category]}]},
        "subject": subject,
        "period": {"start": "2026-01-05"},
        "author": {"reference": author},
    }
    if status != "active":  # an ended flag says why (contract section 5)
        body["period"] = {"start": "2026-01-05", "end": "2026-03-01"}
        body["extension"] = [{
            "url": f"{CANON}/StructureDefinition/status-reason",
            "valueCodeableConcept": {"coding": [{"system": f"{CANON}/CodeSystem/status-reason", "code": "plan-ended"}]},
        }]
    return body


async def _seed(client: httpx.AsyncClient) -> dict[str, str]:
    ids = {"org": await create(client, organization())}
    for key, nhs in (("p1", "9990000018"), ("p2", "9990000026"), ("p3", "9990000034")):
        ids[key] = await create(client, patient(nhs=nhs))
    author = f"Organization/{ids['org']}"
    bodies = [
        _flag({"reference": f"Patient/{ids['p1']}"}, author, "child-protection-plan"),
        _flag({"identifier": {"system": NHS, "value": "9990000018"}}, author, "looked-after-child"),
        _flag({"reference": f"Patient/{ids['p2']}"}, author, "child-protection-plan"),
        _flag({"identifier": {"system": NHS, "value": "9990000026"}}, author, "looked-after-child", "inactive"),
    ]
    for body in bodies:
        ended = body["status"] != "active"
        r = await client.post("/fhir/Flag", json=_flag(body["subject"], author, body["category"][0]["coding"][0]["code"])
                              if ended else body)  # type: ignore[index]
        assert r.status_code == 201, r.text
        if ended:  # raised, then ended
            fid = r.json()["id"]
            r = await client.put(f"/fhir/Flag/{fid}", json={**body, "id": fid})
            assert r.status_code == 200, r.text
    return ids


VALUE_SETS = [
    {"nhs": "9990000018", "category": "child-protection-plan"},
    {"nhs": "9990000018", "category": "looked-after-child"},
    {"nhs": "9990000026", "category": "looked-after-child"},
    {"a": "9990000018", "b": "9990000026"},
    {"a": "9990000034", "b": "9990000999"},
    {"child": "@p1", "status": "active"},
    {"child": "@p2", "status": "inactive"},
    {"nhs": "9990000026"},
    {"id": "@p3"},
    {"system": NHS, "value": "9990000034"},
    {"system": "urn:other", "value": "9990000034"},
]


@pytest.mark.parametrize("rtype, template", TEMPLATES, ids=lambda x: x if isinstance(x, str) else "")
async def test_prepared_matches_the_generic_search(
    client: httpx.AsyncClient, clean_ctx: AppContext, rtype: str, template: list[tuple[str, str]]
) -> None:
    ids = await _seed(client)
    search = prepared(rtype, template)
    checked = found = 0
    for values in VALUE_SETS:
        if set(values) != search.names:
            continue
        values = {k: ids[v[1:]] if v.startswith("@") else v for k, v in values.items()}
        written = [(k, _fill(v, values)) for k, v in template]
        req = parse_search(rtype, [*written, ("_count", "100"), ("_total", "none")], base=f"{BASE_URL}/fhir",
                           max_count=1000)
        async with clean_ctx.sessionmaker() as session, session.begin():
            expected = [m.id for m in (await run_search(session, req)).matches]
            got = [m.id for m in await search.run(session, **values)]
        assert got == expected
        checked += 1
        found += bool(got)
    assert checked >= 1 and found >= 1  # compared, and on something that matched


def _fill(text: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):
        text = text.replace(f":{name}", values[name])
    return text


async def test_duplicate_check_still_sees_both_ways_of_naming_the_child(client: httpx.AsyncClient) -> None:
    ids = await _seed(client)
    r = await client.post("/fhir/Flag", json=_flag({"identifier": {"system": NHS, "value": "9990000018"}},
                                                    f"Organization/{ids['org']}", "child-protection-plan"))
    assert r.status_code == 409
    assert r.json()["issue"][0]["code"] == "duplicate"


def test_templates_that_cannot_be_prepared() -> None:
    with pytest.raises(ValueError) as err:
        prepared("Patient", [("name", ":family")])  # a string value becomes a LIKE pattern
    assert str(err.value) == "placeholders ['family'] in name=:family cannot be bound"
    with pytest.raises(ValueError) as err:
        prepared("Flag", [("subject", "Patient/:child"), ("_include", "Flag:author")])
    assert str(err.value) == "a prepared search has no _include, _revinclude, _summary or unknown parameters"


async def test_run_takes_exactly_the_placeholders(clean_ctx: AppContext) -> None:
    search = prepared("Patient", [("_id", ":id")])
    async with clean_ctx.sessionmaker() as session, session.begin():
        with pytest.raises(TypeError) as err:
            await search.run(session, identifier="x")
    assert str(err.value) == "this search takes exactly ['id'], not ['identifier']"

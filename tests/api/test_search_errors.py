"""Search errors on both databases: unknown parameters (ignored with a warning, or 400 under
`Prefer: handling=strict`), invalid values (400 naming the parameter), and no 500 for any query."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_search_fixtures import create, ids, patient, search
from tests.conftest import FHIR
from tests.support.fhir_data import unidentified


async def test_unknown_parameters_are_ignored_and_reported(client: httpx.AsyncClient) -> None:
    pid = (await create(client, patient("9990000018")))["id"]
    bundle = await search(client, "/fhir/Patient?foo=1&family=smith&_has:Flag:patient:status=active")
    assert bundle["link"] == [
        {"relation": "self", "url": f"{FHIR}/Patient?family=smith&_count=50"},
        {"relation": "first", "url": f"{FHIR}/Patient?family=smith&_count=50"},
        {"relation": "last", "url": f"{FHIR}/Patient?family=smith&_count=50"},
    ]
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["id"] == pid
    assert unidentified(bundle["entry"][1]) == {
        "resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "not-supported", "expression": ["foo"],
             "diagnostics": "SF-0400: Unknown search parameter 'foo' for Patient was ignored"},
            {"severity": "warning", "code": "not-supported", "expression": ["_has:Flag:patient:status"],
             "diagnostics": "SF-0400: Unknown search parameter '_has:Flag:patient:status' for Patient was ignored"},
        ]},
        "search": {"mode": "outcome"},
    }


async def test_strict_handling_rejects_unknown_parameters(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/Flag?foo=1&status=active", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert r.json() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-supported", "expression": ["foo"],
         "diagnostics": "SF-0400: Unknown search parameter 'foo' for Flag"}]}
    lenient = await client.get("/fhir/Flag?status=active", headers={"Prefer": "handling=strict"})
    assert lenient.status_code == 200


@pytest.mark.parametrize(
    ("query", "diagnostics", "expression"),
    [
        ("date=2026-02-30", "SF-0402: Invalid date value '2026-02-30' for parameter 'date'", "date"),
        ("date=on2026", ("SF-0402: Invalid prefix 'on' in 'on2026' for parameter 'date' "
                        "(allowed: eq, ne, gt, lt, ge, le, sa, eb, ap)"), "date"),
        ("_lastUpdated=yesterday", ("SF-0402: Invalid prefix 'ye' in 'yesterday' for parameter '_lastUpdated' "
                                   "(allowed: eq, ne, gt, lt, ge, le, sa, eb, ap)"), "_lastUpdated"),
        ("code:text=plan", ("SF-0404: Modifier ':text' is not supported on token parameter 'code' "
                           "(supported: :missing, :not)"), "code:text"),
        ("_count=many", "SF-0408: '_count' must be an integer, not 'many'", "_count"),
        ("_sort=patient", "SF-0410: Cannot sort on 'patient' (a reference of Flag)", "_sort"),
        ("_include=Flag:nothing", ("SF-0418: Invalid _include value 'Flag:nothing': 'nothing' is not a reference "
                                  "parameter of Flag"), "_include"),
    ],
)
async def test_invalid_values_are_400(client: httpx.AsyncClient, query: str, diagnostics: str, expression: str) -> None:
    for r in (
        await client.get(f"/fhir/Flag?{query}"),
        await client.post("/fhir/Flag/_search", content=query,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}),
    ):
        assert r.status_code == 400
        assert r.json() == {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "invalid", "diagnostics": diagnostics, "expression": [expression]}]}


NASTY = [
    "", "=", "&&&", "=x", "patient=", "patient:=x", "patient.=x", "patient..identifier=x", ".=x", ":=x",
    "patient:identifier=", "patient:identifier=|", "patient:identifier=a|b|c", "status=|", "status=%00",
    "%00=1", "family=%ff%fe", "family=" + "x" * 5000, "identifier=" + "y|" * 300, "_id=" + "z" * 300,
    "date=9999-12-31", "date=lt0001-01-01", "date=ap0001", "date=ap9999-12-31T23:59:59.999999Z",
    "date=0000", "date=2026-01-01T25:00", "date=2026-01-01T10:00:00+99:99", "date=ge", "_lastUpdated=eq",
    "_count=" + "9" * 5000, "_count=1e3", "_count=%C2%B2", "_offset=-5", "_offset=99999999999999999999",
    "_sort=", "_sort=-", "_sort=,", "_include=", "_include=:", "_include=*:*", "_revinclude=Flag:*:Patient",
    "_include:iterate=Task:owner:Organization", "_elements=", "_summary=", "_total=", "author:Patient.name=x",
    "author:Foo=1", "subject:Patient.identifier:missing=true", "patient.identifier.foo=1",
    "patient._lastUpdated=gt2020", "patient:missing=1", "_id:missing=true", "_id.name=x", "_has=x",
    "category=a\\", "category=\\\\,\\|", "patient=Patient/", "patient=/x", "patient=urn:uuid:1",
    "code:not=", "_tag=%F0%9F%98%80", "_profile=http://x|y",
]


async def test_no_query_string_causes_a_500(client: httpx.AsyncClient) -> None:
    await create(client, patient("9990000018"))
    for query in NASTY:
        for r in (
            await client.get(f"/fhir/Flag?{query}"),
            await client.post("/fhir/Flag/_search", content=query,
                              headers={"Content-Type": "application/x-www-form-urlencoded"}),
        ):
            assert r.status_code in (200, 400), (query, r.status_code, r.text)
            assert r.json()["resourceType"] in ("Bundle", "OperationOutcome"), query


async def test_post_search_combines_url_and_form_parameters(client: httpx.AsyncClient) -> None:
    amy = (await create(client, patient("9990000018", "Smith")))["id"]
    await create(client, patient("9990000026", "Smithers", "Ben"))
    r = await client.post("/fhir/Patient/_search?family=smith", content="given=amy&_count=1",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [amy]
    assert await ids(client, "/fhir/Patient?family=smith&given=amy") == [amy]
    bad = await client.post("/fhir/Patient/_search", json={"family": "smith"})
    assert bad.status_code == 415

"""Result parameters on both databases (https://hl7.org/fhir/R4/search.html#return): exact bundles
for `_include`/`_revinclude`, `_sort`, `_count` and paging links, `_summary`, `_total`, `_elements`."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Table, false

from app.context import AppContext
from app.fhir.nhs_number import check_digit
from app.fhir.search.params import parse_search
from app.search.executor import run_search
from tests.api.test_search_fixtures import (
    NHS,
    create,
    entries,
    flag,
    ids,
    links,
    local,
    organization,
    patient,
    put,
    search,
)
from tests.conftest import FHIR
from tests.support.fhir_data import unidentified


def _strip(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle without what changes on every call (its id and generation time)."""
    assert set(bundle["meta"]) == {"lastUpdated"}
    return {k: v for k, v in bundle.items() if k not in ("id", "meta")}


def nhs_numbers(n: int) -> list[str]:
    """The first `n` valid test-range NHS numbers from 999 000 001x on."""
    out, stem = [], 999000001
    while len(out) < n:
        check = check_digit(str(stem))
        if check is not None:
            out.append(f"{stem}{check}")
        stem += 1
    return out


async def _cpis(client: httpx.AsyncClient) -> dict[str, Any]:
    la = await put(client, {**organization("Leeds City Council", "LA1", "0113 222 4401"), "id": "la"})
    amy = await create(client, patient("9990000018"))
    f1 = await create(client, flag(f"Patient/{amy['id']}", "Organization/la"))
    f2 = await create(client, flag({"type": "Patient", "identifier": {"system": NHS, "value": "9990000018"}},
                                   "Organization/la", "fgm"))
    return {"la": la, "amy": amy, "f1": f1, "f2": f2}


async def test_cpis_check_returns_flags_and_their_authors(client: httpx.AsyncClient) -> None:
    w = await _cpis(client)
    query = f"patient:identifier={NHS}|9990000018&status=active&_include=Flag:author"
    bundle = await search(client, f"/fhir/Flag?{query}")
    self_url = f"{FHIR}/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number%7C9990000018&status=active" \
               "&_include=Flag:author&_count=50"
    assert _strip(bundle) == {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 2,
        "link": [
            {"relation": "self", "url": self_url},
            {"relation": "first", "url": self_url},
            {"relation": "last", "url": self_url},
        ],
        "entry": [
            {"fullUrl": f"{FHIR}/Flag/{w['f1']['id']}", "resource": w["f1"], "search": {"mode": "match"}},
            {"fullUrl": f"{FHIR}/Flag/{w['f2']['id']}", "resource": w["f2"], "search": {"mode": "match"}},
            {"fullUrl": f"{FHIR}/Organization/la", "resource": w["la"], "search": {"mode": "include"}},
        ],
    }
    # the POST form gives the same result
    r = await client.post("/fhir/Flag/_search", content=query.replace("|", "%7C"),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and _strip(r.json()) == _strip(bundle)


async def test_includes_and_revincludes(client: httpx.AsyncClient) -> None:
    w = await _cpis(client)
    await put(client, {"resourceType": "PractitionerRole", "id": "hv", "organization": {"reference": "Organization/la"}})
    amy = w["amy"]["id"]
    f3 = await create(client, flag(f"Patient/{amy}", "PractitionerRole/hv", "risk-to-self"))
    f1, f2 = w["f1"]["id"], w["f2"]["id"]
    bundle = await search(client, f"/fhir/Flag?_id={f3['id']}&_include=Flag:author"
                                  "&_include:iterate=PractitionerRole:organization")
    assert entries(bundle) == [("match", f"Flag/{f3['id']}"), ("include", "PractitionerRole/hv"),
                               ("include", "Organization/la")]
    bundle = await search(client, f"/fhir/Flag?_id={f3['id']}&_include=*")
    assert entries(bundle) == [("match", f"Flag/{f3['id']}"), ("include", f"Patient/{amy}"),
                               ("include", "PractitionerRole/hv")]
    bundle = await search(client, f"/fhir/Flag?_id={f3['id']},{f1}&_include=Flag:author:Organization")
    assert entries(bundle) == [("match", f"Flag/{f1}"), ("match", f"Flag/{f3['id']}"),
                               ("include", "Organization/la")]
    bundle = await search(client, f"/fhir/Patient?_id={amy}&_revinclude=Flag:patient")
    assert entries(bundle) == [("match", f"Patient/{amy}"), ("include", f"Flag/{f1}"),
                               ("include", f"Flag/{f3['id']}")]
    bundle = await search(client, "/fhir/Organization?_id=la&_revinclude=*")
    assert entries(bundle) == [("match", "Organization/la"), ("include", f"Flag/{f1}"), ("include", f"Flag/{f2}"),
                               ("include", "PractitionerRole/hv")]
    bundle = await search(client, "/fhir/Organization?_id=la&_revinclude=PractitionerRole:organization"
                                  "&_revinclude:iterate=Flag:author")
    # :iterate applies to the matches too, then to what each round added (f3's author is the role)
    assert entries(bundle) == [("match", "Organization/la"), ("include", "PractitionerRole/hv"),
                               ("include", f"Flag/{f1}"), ("include", f"Flag/{f2}"), ("include", f"Flag/{f3['id']}")]
    # included resources never repeat a match
    bundle = await search(client, "/fhir/Flag?author=Organization/la&_include=Flag:author&_revinclude=Flag:author")
    assert entries(bundle) == [("match", f"Flag/{f1}"), ("match", f"Flag/{f2}"), ("include", "Organization/la")]


async def test_include_limit_is_reported(client: httpx.AsyncClient, ctx: AppContext) -> None:
    w = await _cpis(client)
    ctx.settings.max_includes = 1
    try:
        bundle = await search(client, "/fhir/Organization?_id=la&_revinclude=Flag:author")
    finally:
        ctx.settings.max_includes = 1000
    assert entries(bundle)[:2] == [("match", "Organization/la"), ("include", f"Flag/{w['f1']['id']}")]
    assert unidentified(bundle["entry"][2]) == {
        "resource": {"resourceType": "OperationOutcome", "issue": [{
            "severity": "warning", "code": "too-costly",
            "diagnostics": "SF-0420: Included resources were truncated at the server's limit"}]},
        "search": {"mode": "outcome"},
    }


async def _patients(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    """Children 0..n-1: families Brown adams Clark Évans Brown Davis Adams; births 2010-01-01, 2011-01-02,
    2012-01-03, 2013-01-01, 2010-01-02, none, 2012-01-01."""
    families = ["Brown", "adams", "Clark", "Évans", "Brown", "Davis", "Adams"]
    out = []
    for i, nhs in enumerate(nhs_numbers(n)):
        body = patient(nhs, families[i], f"Child{i}", birth=f"20{10 + i % 4}-01-0{1 + i % 3}")
        if i == 5:
            del body["birthDate"]
        out.append(await create(client, body))
    return out


async def test_paging_visits_every_match_once_in_order(client: httpx.AsyncClient) -> None:
    people = await _patients(client, 7)
    expected = [people[i]["id"] for i in (1, 6, 0, 4, 2, 5, 3)]  # adams adams brown brown clark davis evans
    url = "/fhir/Patient?family:missing=false&_sort=family&_count=3"
    seen, pages = [], []
    while url:
        bundle = await search(client, url)
        pages.append(links(bundle))
        assert bundle["total"] == 7
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = local(pages[-1]["next"]) if "next" in pages[-1] else ""
    assert seen == expected and len(pages) == 3
    q = f"{FHIR}/Patient?family:missing=false&_sort=family&_count=3"
    assert pages[0] == {"self": q, "first": q, "next": f"{q}&_offset=3", "last": f"{q}&_offset=6"}
    assert pages[1] == {"self": f"{q}&_offset=3", "first": q, "previous": q, "next": f"{q}&_offset=6",
                        "last": f"{q}&_offset=6"}
    assert pages[2] == {"self": f"{q}&_offset=6", "first": q, "previous": f"{q}&_offset=3",
                        "last": f"{q}&_offset=6"}
    # following `previous` walks back over the same pages
    back = await search(client, local(pages[2]["previous"]))
    assert [e["resource"]["id"] for e in back["entry"]] == expected[3:6]


async def test_sort_keys(client: httpx.AsyncClient) -> None:
    people = await _patients(client, 7)
    pid = [p["id"] for p in people]
    # family (case/accent-insensitive) then birthdate descending; no birthdate sorts last; ties by creation
    assert await ids(client, "/fhir/Patient?_sort=family,-birthdate") == [
        pid[6], pid[1], pid[4], pid[0], pid[2], pid[5], pid[3]]
    assert await ids(client, "/fhir/Patient?_sort=-birthdate&_count=3") == [pid[3], pid[2], pid[6]]
    assert await ids(client, "/fhir/Patient?_sort=birthdate") == [pid[0], pid[4], pid[1], pid[6], pid[2], pid[3], pid[5]]
    assert await ids(client, "/fhir/Patient?_sort=-_lastUpdated&_count=2") == [pid[6], pid[5]]
    assert await ids(client, "/fhir/Patient?_sort=_id") == sorted(pid)
    assert await ids(client, "/fhir/Patient?_sort=-identifier&_count=1") == [pid[6]]


async def test_count_total_and_summary(client: httpx.AsyncClient) -> None:
    await _patients(client, 4)
    q = f"{FHIR}/Patient?gender:missing=true"
    assert _strip(await search(client, "/fhir/Patient?gender:missing=true&_summary=count")) == {
        "resourceType": "Bundle", "type": "searchset", "total": 4,
        "link": [{"relation": "self", "url": f"{q}&_summary=count&_count=50"}],
    }
    assert _strip(await search(client, "/fhir/Patient?gender:missing=true&_count=0")) == {
        "resourceType": "Bundle", "type": "searchset", "total": 4,
        "link": [{"relation": "self", "url": f"{q}&_count=0"}],
    }
    none = await search(client, "/fhir/Patient?gender:missing=true&_total=none&_count=2")
    assert "total" not in none and set(links(none)) == {"self", "first", "next"}
    assert (await search(client, "/fhir/Patient?_total=accurate&_count=1"))["total"] == 4
    assert (await search(client, "/fhir/Patient?_total=estimate&_count=1&_offset=3"))["total"] == 4
    assert len((await search(client, "/fhir/Patient?_count=100000"))["entry"]) == 4
    assert links(await search(client, "/fhir/Patient?_count=100000"))["self"] == f"{FHIR}/Patient?_count=500"
    beyond = await search(client, "/fhir/Patient?_count=2&_offset=10")
    assert beyond["total"] == 4 and "entry" not in beyond and "next" not in links(beyond)


async def test_elements_and_summary_data(client: httpx.AsyncClient) -> None:
    w = await _cpis(client)
    bundle = await search(client, f"/fhir/Flag?_id={w['f1']['id']}&_elements=category,period&_include=Flag:author")
    f1 = w["f1"]
    subsetted = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
    assert bundle["entry"][0]["resource"] == {
        "resourceType": "Flag", "id": f1["id"], "meta": {**f1["meta"], "tag": [subsetted]},
        # status, code and subject are mandatory (1..1), so they stay although not asked for
        "status": "active", "category": f1["category"], "code": f1["code"], "subject": f1["subject"],
        "period": f1["period"],
    }
    assert bundle["entry"][1]["resource"] == w["la"]  # included resources are not subsetted
    text = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Amy</div>"}
    p = await create(client, {**patient("9990000026"), "text": text})
    data = (await search(client, f"/fhir/Patient?_id={p['id']}&_summary=data"))["entry"][0]["resource"]
    assert "text" not in data and data["meta"]["tag"] == [subsetted] and data["name"] == p["name"]


async def test_access_conditions_apply_to_page_total_and_includes(client: httpx.AsyncClient, ctx: AppContext) -> None:
    """The hook the security policy uses: its conditions narrow the matches, the total and the includes."""
    w = await _cpis(client)
    req = parse_search("Flag", [("author", "Organization/la"), ("_include", "Flag:author"), ("_count", "1")],
                       base=FHIR)
    asked: list[str | None] = []

    def restrict(table: Table, rtype: str | None) -> list[Any]:
        asked.append(rtype)
        return [table.c.res_id != w["f1"]["id"], table.c.res_id != "la"]

    async with ctx.sessionmaker() as session:
        result = await run_search(session, req, restrict=restrict)
        unrestricted = await run_search(session, req)
    assert ([m.id for m in result.matches], result.total, result.included) == ([w["f2"]["id"]], 1, [])
    assert asked == ["Flag", "Organization"]  # Flag:author may name any type: here it names an Organization
    assert ([m.id for m in unrestricted.matches], unrestricted.total) == ([w["f1"]["id"]], 2)
    assert [i.id for i in unrestricted.included] == ["la"]


async def test_includes_carry_the_access_conditions_of_the_types_they_can_return(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """An `_include` whose parameter is declared with its targets (Flag:patient), one that names its
    target type (Flag:author:Organization) and a `_revinclude` (of Flags) are narrowed by those types'
    conditions alone; one that may return any type (Flag:author) by the conditions of the types its
    references name. Each still applies."""
    w = await _cpis(client)
    asked: list[str | None] = []

    def hiding(*ids: str) -> Any:
        def restrict(table: Table, rtype: str | None) -> list[Any]:
            asked.append(rtype)
            return [table.c.res_id.not_in(ids)]
        return restrict

    includes = [("_include", "Flag:patient"), ("_include", "Flag:author:Organization"), ("_include", "Flag:author")]
    req = parse_search("Flag", [("_id", w["f1"]["id"]), *includes], base=FHIR)
    async with ctx.sessionmaker() as session:
        shown = await run_search(session, req, restrict=hiding(w["amy"]["id"]))
        assert asked == ["Flag", "Patient", "Organization", "Organization"]
        assert ([m.id for m in shown.matches], [i.id for i in shown.included]) == ([w["f1"]["id"]], ["la"])
        asked.clear()
        hidden = await run_search(session, req, restrict=hiding("la"))
        assert ([m.id for m in hidden.matches], [i.id for i in hidden.included]) == ([w["f1"]["id"]], [w["amy"]["id"]])
        asked.clear()
        req = parse_search("Patient", [("_id", w["amy"]["id"]), ("_revinclude", "Flag:patient")], base=FHIR)
        revincluded = await run_search(session, req, restrict=hiding(w["f2"]["id"]))
        assert asked == ["Patient", "Flag"]
        assert [i.id for i in revincluded.included] == [w["f1"]["id"]]
        assert [i.id for i in (await run_search(session, req, restrict=hiding(w["f1"]["id"]))).included] == []


async def test_an_include_of_any_type_carries_each_named_types_own_conditions(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """`Task:focus` may name any type: the include asks the conditions of the types the page's Tasks name
    (a Patient and a Flag here), each applied to its own type's rows only."""
    w = await _cpis(client)
    tasks = [await create(client, {"resourceType": "Task", "status": "requested", "intent": "order",
                                   "focus": {"reference": ref}}) for ref in (f"Patient/{w['amy']['id']}",
                                                                           f"Flag/{w['f1']['id']}")]
    asked: list[str | None] = []

    def hiding(hidden_type: str) -> Any:
        def restrict(table: Table, rtype: str | None) -> list[Any]:
            asked.append(rtype)
            return [false()] if rtype == hidden_type else []
        return restrict

    req = parse_search("Task", [("_id", ",".join(t["id"] for t in tasks)), ("_include", "Task:focus")], base=FHIR)
    async with ctx.sessionmaker() as session:
        no_patient = await run_search(session, req, restrict=hiding("Patient"))
        assert asked == ["Task", "Flag", "Patient"]
        assert [i.id for i in no_patient.included] == [w["f1"]["id"]]
        no_flag = await run_search(session, req, restrict=hiding("Flag"))
        assert [i.id for i in no_flag.included] == [w["amy"]["id"]]
        assert [i.id for i in (await run_search(session, req, restrict=hiding("Task"))).included] == []

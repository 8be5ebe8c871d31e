"""Client-level parity with HAPI FHIR, part 2: search by patient identifier, status and date, `_include`,
and paging by following `next` links (httpx and fhirpy), against SafeFlag and the HAPI sandbox
(tests/hapi/parity.py). https://hl7.org/fhir/R4/search.html
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from tests.hapi.parity import (
    Server,
    content,
    create,
    flag,
    is_outcome,
    matches,
    organization,
    patient,
    status_reason,
    unique,
)
from tests.hapi.support import FHIR_JSON, new_nhs_number

pytestmark = pytest.mark.hapi

PAGE = 3
PATIENTS = 7


async def _child_with_flags(http: httpx.AsyncClient) -> dict[str, Any]:
    """A child with two active flags (2025-06 and 2026-02, open-ended) and one ended in 2025, authored
    by one local authority."""
    nhs = new_nhs_number()
    child = await create(http, patient(nhs))
    org = await create(http, organization())
    subject, author = f"Patient/{child['id']}", f"Organization/{org['id']}"
    cp = await create(http, flag(subject, author, start="2025-06-01"))
    lac = await create(
        http, flag(subject, author, "looked-after-child", "764841000000100", start="2026-02-01")
    )
    ended = await create(http, flag(subject, author, "risk-to-self", "886941000000103", start="2025-03-01"))
    ended_body = {
        **content(ended),
        "status": "inactive",
        "period": {"start": "2025-03-01", "end": "2025-12-31"},
        "extension": [status_reason()],
    }
    r = await http.put(f"/Flag/{ended['id']}", json=ended_body, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    return {"nhs": nhs, "child": child, "org": org, "cp": cp["id"], "lac": lac["id"], "ended": ended["id"]}


def _ids(bundle: dict[str, Any]) -> list[str]:
    return sorted(r["id"] for r in matches(bundle))


async def test_search_by_patient_identifier_status_and_date(target: Server, http: httpx.AsyncClient) -> None:
    w = await _child_with_flags(http)
    ident = f"{NHS_NUMBER_SYSTEM}|{w['nhs']}"
    patients = (await http.get("/Patient", params={"identifier": ident})).json()
    assert (patients["type"], _ids(patients)) == ("searchset", [w["child"]["id"]])

    # the chained form, understood by both servers
    chained = (await http.get("/Flag", params={"patient.identifier": ident})).json()
    assert _ids(chained) == sorted([w["cp"], w["lac"], w["ended"]])
    active = (await http.get("/Flag", params={"patient.identifier": ident, "status": "active"})).json()
    assert _ids(active) == sorted([w["cp"], w["lac"]])
    assert active["total"] == 2

    # `:identifier` on a reference parameter: SafeFlag's CP-IS check (contract section 5); HAPI 8.8 refuses
    # the modifier (HAPI-2498) on reference parameters
    modifier = await http.get("/Flag", params={"patient:identifier": ident, "status": "active"})
    assert modifier.status_code == target.expect(hapi=400, safeflag=200)
    if target.name == "safeflag":
        assert _ids(modifier.json()) == sorted([w["cp"], w["lac"]])
    else:
        assert is_outcome(modifier.json())
        assert modifier.json()["issue"][0]["diagnostics"].startswith(
            "HAPI-2498: Unsupported search modifier(s)"
        )

    # Flag `date` is the period: open-ended periods reach every later date (https://hl7.org/fhir/R4/search.html#date)
    subject = f"Patient/{w['child']['id']}"
    since_2026 = (await http.get("/Flag", params={"patient": subject, "date": "ge2026-01-01"})).json()
    assert _ids(since_2026) == sorted([w["cp"], w["lac"]])
    early = (await http.get("/Flag", params={"patient": subject, "date": "lt2025-04-01"})).json()
    assert _ids(early) == [w["ended"]]
    ended_in_2025 = (await http.get("/Flag", params={"subject": subject, "status": "inactive"})).json()
    assert _ids(ended_in_2025) == [w["ended"]]


async def test_include_the_author(target: Server, http: httpx.AsyncClient) -> None:
    w = await _child_with_flags(http)
    found = (
        await http.get(
            "/Flag",
            params={
                "patient.identifier": f"{NHS_NUMBER_SYSTEM}|{w['nhs']}",
                "status": "active",
                "_include": "Flag:author",
            },
        )
    ).json()
    modes = sorted(
        (e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"]) for e in found["entry"]
    )
    org_id = w["org"]["id"]
    assert modes == sorted(
        [("match", "Flag", w["cp"]), ("match", "Flag", w["lac"]), ("include", "Organization", org_id)]
    )
    assert found["total"] == 2  # matches only
    included = next(e for e in found["entry"] if e["search"]["mode"] == "include")
    assert included["fullUrl"] == f"{target.base}/Organization/{org_id}"
    assert content(included["resource"]) == content(w["org"])


async def test_paging_follows_next_links(target: Server, http: httpx.AsyncClient) -> None:
    family = unique("Paging").replace("-", "")
    created = sorted(
        [(await create(http, patient(new_nhs_number(), family=family)))["id"] for _ in range(PATIENTS)]
    )
    url: str | None = f"{target.base}/Patient?family={family}&_count={PAGE}"
    pages: list[list[str]] = []
    while url:
        assert url.startswith(target.base), url  # absolute, under the server's own base
        page = (await http.get(url)).json()
        assert page["type"] == "searchset"
        pages.append([r["id"] for r in matches(page)])
        url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(i for p in pages for i in p) == created
    # fhirpy follows the same links
    everyone = await target.fhirpy().resources("Patient").search(family=family).limit(PAGE).fetch_all()
    assert sorted(p.id for p in everyone) == created
    # _summary=count: the total alone
    counted = (await http.get("/Patient", params={"family": family, "_summary": "count"})).json()
    assert (counted["total"], counted.get("entry")) == (PATIENTS, None)


async def test_fhirpy_search_with_include(target: Server, http: httpx.AsyncClient) -> None:
    w = await _child_with_flags(http)
    client = target.fhirpy()
    raw = await (
        client.resources("Flag")
        .search(**{"patient.identifier": f"{NHS_NUMBER_SYSTEM}|{w['nhs']}"}, status="active")
        .include("Flag", "author")
        .fetch_raw()
    )
    kinds = sorted(e.resource.resourceType for e in raw.entry)
    assert kinds == ["Flag", "Flag", "Organization"]
    flags = await client.resources("Flag").search(subject=f"Patient/{w['child']['id']}").fetch_all()
    assert sorted(f.id for f in flags) == sorted([w["cp"], w["lac"], w["ended"]])

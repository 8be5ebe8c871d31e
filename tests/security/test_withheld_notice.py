"""The withheld notice is no oracle: what a reader learns from a search (its entries, its total, its
information entry about restricted records) depends only on what that reader may see and on the
patients the search names, never on a criterion about the hidden records themselves (author, category,
code, `_id`, status, date, identifier, paging, `_summary=count`, `_total`).

A fixed data set of visible and restricted flags about three children is searched by an ED clinician
under many combinations of criteria; whenever two searches show the same entries and total and name
the same patients, their notices must be identical, and a notice appears exactly when a patient of the
search has a restricted flag. The old numbered notice ("1 restricted record was withheld") failed this
at the first pair (`author=Organization/sh` against `author=Organization/nobody`)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.security.labels import CONFIDENTIALITY, SEX, withheld_issue
from app.stored import StoredResource
from tests.safeguarding.support import CATEGORY, CHILD, CHILD_NHS, ED, LA, NHS, example, flag, patient
from tests.security.tokens_fixture import Auth

SH, NOBODY = "Organization/sh", "Organization/nobody"
P2, P3 = "Patient/p2", "Patient/p3"
LABELS = {"security": [{"system": CONFIDENTIALITY, "code": "R"}, SEX]}
NOTICE = withheld_issue().to_fhir()


async def world(ctx: AppContext) -> dict[str, StoredResource]:
    """CHILD: a visible plan (the local authority's), a visible fgm flag (the ED's own), a restricted
    exploitation-risk flag and an ended restricted one (the sexual-health service's). P2: one restricted
    flag only. P3: one visible flag only."""
    async with ctx.unit_of_work() as svc:
        await svc.update("Patient", "example-child", example("example-child"))
        await svc.update("Patient", "p2", patient("p2", "9990000034", "2015-05-01"))
        await svc.update("Patient", "p3", patient("p3", "9990000042", "2016-06-01"))
        repo = svc.repo

        async def make(category: str, subject: str, author: str, org: str, restricted: bool, n: int,
                       status: str = "active") -> StoredResource:
            body = {**flag(category, subject, author), "status": status,
                    "identifier": [{"system": "urn:test", "value": f"f{n}"}],
                    "period": {"start": f"2026-0{n}-01"}, **({"meta": LABELS} if restricted else {})}
            return await repo.create("Flag", body, org=org)

        return {
            "plan": await make("child-protection-plan", CHILD, LA, LA, False, 1),
            "fgm": await make("fgm", CHILD, ED, ED, False, 2),
            "risk": await make("exploitation-risk", CHILD, SH, SH, True, 3),
            "ended": await make("risk-to-self", CHILD, SH, SH, True, 4, "inactive"),
            "p2": await make("exploitation-risk", P2, SH, SH, True, 5),
            "p3": await make("looked-after-child", P3, LA, LA, False, 6),
        }


def criteria(w: dict[str, StoredResource]) -> list[list[tuple[str, str]]]:
    ids = {k: v.id for k, v in w.items()}
    return [
        [], [("author", SH)], [("author", NOBODY)], [("author", LA)], [("author", ED)],
        [("_id", ids["risk"])], [("_id", ids["p2"])], [("_id", ids["plan"])], [("_id", "no-such-flag")],
        [("_id", f"{ids['risk']},{ids['fgm']}")], [("_id:not", ids["risk"])],
        [("category", f"{CATEGORY}|exploitation-risk")], [("category", f"{CATEGORY}|fgm")],
        [("category", f"{CATEGORY}|risk-to-self")],
        [("code", f"{CATEGORY}|exploitation-risk")], [("code", "http://snomed.info/sct|342191000000101")],
        [("status", "inactive")], [("status", "active")], [("date", "ge2026-03-01")], [("date", "lt2026-03-01")],
        [("identifier", "urn:test|f3")], [("identifier", "urn:test|f1")], [("_security", f"{CONFIDENTIALITY}|R")],
        [("author", SH), ("category", f"{CATEGORY}|exploitation-risk")],
        [("_summary", "count")], [("_summary", "count"), ("author", SH)], [("_summary", "count"), ("author", NOBODY)],
        [("_total", "accurate"), ("author", SH)], [("_total", "accurate"), ("author", NOBODY)],
        [("_count", "1"), ("author", SH)], [("_count", "1"), ("author", NOBODY)], [("_count", "1")],
        [("_sort", "-date"), ("_count", "1")], [("_sort", "date"), ("_count", "1")],
        [("_include", "Flag:author"), ("author", SH)], [("_include", "Flag:author"), ("author", NOBODY)],
    ]


PATIENTS: list[tuple[str, list[tuple[str, str]]]] = [
    ("none", []), ("child", [("patient", CHILD)]), ("child", [("subject", CHILD)]),
    ("child", [("patient:identifier", f"{NHS}|{CHILD_NHS}")]), ("p2", [("patient", P2)]), ("p3", [("subject", P3)]),
]


EXPECTED_KEYS = 20  # the 216 searches show 20 distinct (patients named, entries, total): 196 comparisons


def seen(bundle: dict[str, Any]) -> tuple[tuple[tuple[str, str, str], ...], int | None, list[Any]]:
    """(entries shown, total, the information entries)."""
    entries = bundle.get("entry", [])
    shown = tuple(sorted((e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"])
                         for e in entries if e["search"]["mode"] != "outcome"))
    notices = [i for e in entries if e["search"]["mode"] == "outcome" for i in e["resource"]["issue"]]
    return shown, bundle.get("total"), notices


async def test_no_criterion_changes_what_the_notice_says(client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth) -> None:
    w = await world(clean_ctx)
    ed = auth("ed-clinician", org=ED)
    hidden = {w[k].id for k in ("risk", "ended", "p2")}
    of_child = {w[k].id for k in ("plan", "fgm")}
    learnt: dict[tuple[Any, ...], tuple[list[Any], list[tuple[str, str]]]] = {}
    compared = 0
    for (named, about), extra in itertools.product(PATIENTS, criteria(w)):
        query = about + extra
        r = await client.get("/fhir/Flag", params=query, headers=ed)
        assert r.status_code == 200, (query, r.text)
        shown, total, notices = seen(r.json())
        assert not hidden & {rid for _m, _t, rid in shown}, query
        for link in r.json().get("link", []):
            asked = " ".join(v for _k, v in query)
            assert not any(h in link["url"] for h in hidden if h not in asked), (query, link)
        # a notice exactly when a patient of the search (named, or of a flag shown) has a restricted flag
        child_shown = any(rid in of_child for _m, _t, rid in shown)
        expected = [NOTICE] if named in ("child", "p2") or child_shown else []
        assert notices == expected, query
        key = (named, shown, total)
        if key in learnt:
            assert notices == learnt[key][0], (query, learnt[key][1])
            compared += 1
        else:
            learnt[key] = (notices, query)
    assert (len(learnt), compared) == (EXPECTED_KEYS, len(PATIENTS) * len(criteria(w)) - EXPECTED_KEYS)


@pytest.mark.parametrize("reader, org", [("safeguarding-lead", "Organization/elsewhere"),
                                         ("sexual-health-clinician", SH)])
async def test_readers_who_may_see_them_get_no_notice(
    client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth, reader: str, org: str
) -> None:
    w = await world(clean_ctx)
    headers = auth(reader, org=org)
    r = await client.get("/fhir/Flag", params={"patient": CHILD, "author": SH}, headers=headers)
    shown, total, notices = seen(r.json())
    assert (shown, total, notices) == (tuple(sorted(("match", "Flag", w[k].id) for k in ("risk", "ended"))), 2, [])


async def test_includes_and_reads_of_restricted_flags(client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth) -> None:
    w = await world(clean_ctx)
    ed = auth("ed-clinician", org=ED)
    r = await client.get("/fhir/Patient", params={"_id": "example-child,p2", "_revinclude": "Flag:patient"},
                         headers=ed)
    shown, total, notices = seen(r.json())
    assert (shown, total, notices) == (tuple(sorted([
        ("match", "Patient", "example-child"), ("match", "Patient", "p2"),
        ("include", "Flag", w["plan"].id), ("include", "Flag", w["fgm"].id)])), 2, [])
    # a direct read of a withheld record answers 403 (an unknown id 404): the reader learns that this
    # id is a restricted record, as the rule for reads says, and nothing of what it holds or whose it is
    r = await client.get(f"/fhir/Flag/{w['risk'].id}", headers=ed)
    assert (r.status_code, r.json()["issue"][0]["diagnostics"]) == (403, (
        "SF-0802: This Flag is restricted; only safeguarding leads and the organisation that wrote it may see it"))

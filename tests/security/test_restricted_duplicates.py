"""A restricted flag is not betrayed by the duplicate-flag rule: for a writer who may not see it, it
neither conflicts (no 409 naming it, no 409 instead of 201) nor matches a conditional create (no 200
with it instead of 201). The new flag stands beside it; a safeguarding lead sees both."""

from __future__ import annotations

import httpx

from tests.safeguarding.support import CATEGORY, CHILD, ED, borough, flag, oo, organization, put
from tests.security.tokens_fixture import Auth

SH = "Organization/sh"


async def writers(client: httpx.AsyncClient, auth: Auth) -> tuple[dict[str, str], dict[str, str]]:
    """The borough and a sexual-health service; its clinician's and an ED clinician's headers."""
    await borough(client)
    await put(client, organization("sh", "Sexual health service"))
    return auth("sexual-health-clinician", org=SH), auth("ed-clinician", org=ED)


def conflict(existing: str) -> dict[str, object]:
    return oo({"severity": "error", "code": "duplicate", "expression": ["Flag.category", "Flag.subject", "Flag.author"],
               "diagnostics": f"SF-0239: Flag/{existing} is already an active exploitation-risk flag for {CHILD} by "
                              f"{SH}: end it, or use conditional create (If-None-Exist) to get the existing one"})


async def test_a_restricted_flag_neither_conflicts_nor_matches_for_a_writer_who_may_not_see_it(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sh, ed = await writers(client, auth)
    lead = auth("safeguarding-lead", org="Organization/elsewhere")
    risk = flag("exploitation-risk", CHILD, SH)
    r = await client.post("/fhir/Flag", json=risk, headers=sh)  # labelled R + SEX: the sexual-health service's
    assert r.status_code == 201, r.text
    hidden = r.json()["id"]
    assert (await client.get(f"/fhir/Flag/{hidden}", headers=ed)).status_code == 403

    criteria = f"patient={CHILD}&category={CATEGORY}|exploitation-risk&author={SH}&status=active"
    r = await client.post("/fhir/Flag", json=risk, headers={**ed, "If-None-Exist": criteria})
    assert r.status_code == 201, r.text  # matched nothing the ED may see, and conflicts with nothing either
    mine = r.json()["id"]
    assert mine != hidden and hidden not in r.text
    r = await client.post("/fhir/Flag", json=risk, headers=ed)
    assert (r.status_code, r.json()) == (409, conflict(mine))  # the flag the ED may see, never the other
    r = await client.post("/fhir/Flag", json=risk, headers={**ed, "If-None-Exist": criteria})
    assert (r.status_code, r.json()["id"]) == (200, mine)
    # the lead, who may see both, gets the conflict for either; so does the sexual-health service
    r = await client.post("/fhir/Flag", json=risk, headers=lead)
    assert (r.status_code, r.json()["issue"][0]["code"]) == (409, "duplicate")
    assert r.json() in (conflict(mine), conflict(hidden))
    r = await client.post("/fhir/Flag", json=risk, headers=sh)
    assert r.json() in (conflict(mine), conflict(hidden))
    found = (await client.get(f"/fhir/Flag?patient={CHILD}&status=active", headers=lead)).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted([hidden, mine])


async def test_reactivating_a_flag_ignores_a_restricted_one_the_writer_may_not_see(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sh, ed = await writers(client, auth)
    risk = flag("exploitation-risk", CHILD, SH)
    ended = {**risk, "status": "inactive", "extension": [{
        "url": "https://fhir.safeflag.example/StructureDefinition/status-reason",
        "valueCodeableConcept": {"coding": [{"system": "https://fhir.safeflag.example/CodeSystem/status-reason",
                                             "code": "plan-ended"}]}}]}
    r = await client.post("/fhir/Flag", json=risk, headers=ed)
    assert r.status_code == 201, r.text
    r = await client.put(f"/fhir/Flag/{r.json()['id']}", json={**ended, "id": r.json()["id"]}, headers=ed)
    assert r.status_code == 200, r.text
    mine = r.json()
    assert (await client.post("/fhir/Flag", json=risk, headers=sh)).status_code == 201
    active = {k: v for k, v in mine.items() if k not in ("extension", "meta")}
    r = await client.put(f"/fhir/Flag/{mine['id']}", json={**active, "status": "active"}, headers=ed)
    assert (r.status_code, r.json()["status"]) == (200, "active")


HIDDEN_CONFLICT = oo({"severity": "error", "code": "duplicate",
                      "expression": ["Flag.category", "Flag.subject", "Flag.author"],
                      "diagnostics": "SF-0239: An active flag of this category for this patient and author already "
                                     "exists; ask a reader with Flag read access"})


async def test_a_flag_the_writers_scopes_may_not_read_still_conflicts_without_being_named(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    """A `system/Flag.c` client may not read Flags: a duplicate is still refused (clinical safety), but
    the 409 names no flag, author or content, and a conditional create does not return the flag."""
    _sh, ed = await writers(client, auth)
    creator = auth("system", org="Organization/feed", scope="system/Flag.c")
    risk = flag("exploitation-risk", CHILD, ED)
    r = await client.post("/fhir/Flag", json=risk, headers=ed)
    assert r.status_code == 201, r.text
    existing = r.json()["id"]
    r = await client.post("/fhir/Flag", json=risk, headers=creator)
    assert (r.status_code, r.json()) == (409, HIDDEN_CONFLICT)
    criteria = f"patient={CHILD}&category={CATEGORY}|exploitation-risk&author={ED}&status=active"
    r = await client.post("/fhir/Flag", json=risk, headers={**creator, "If-None-Exist": criteria})
    assert (r.status_code, r.json()) == (409, HIDDEN_CONFLICT)  # not 200 with the flag it may not read
    # a client that may also search Flags is told which flag, and gets it from a conditional create
    finder = auth("system", org="Organization/feed", scope="system/Flag.cs")
    r = await client.post("/fhir/Flag", json=risk, headers=finder)
    assert (r.status_code, r.json()) == (409, oo({
        "severity": "error", "code": "duplicate", "expression": ["Flag.category", "Flag.subject", "Flag.author"],
        "diagnostics": f"SF-0239: Flag/{existing} is already an active exploitation-risk flag for {CHILD} by {ED}: "
                       "end it, or use conditional create (If-None-Exist) to get the existing one"}))
    r = await client.post("/fhir/Flag", json=risk, headers={**finder, "If-None-Exist": criteria})
    assert (r.status_code, r.json()["id"]) == (200, existing)
    # the refused attempts' AuditEvents do not name the flag either
    events = (await client.get("/fhir/AuditEvent?outcome=4&_count=50", headers=auth("admin"))).json()
    descs = [e["resource"]["outcomeDesc"] for e in events["entry"]]
    assert descs.count("An active flag of this category for this patient and author already exists; ask a "
                       "reader with Flag read access") == 2
    found = (await client.get(f"/fhir/Flag?patient={CHILD}", headers=auth("admin"))).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [existing]


async def test_a_restricted_flag_does_not_conflict_for_a_writer_whose_scopes_hide_it_either(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    """The restricted label comes first: a flag withheld from the writer does not conflict even when its
    scopes would hide it anyway (an anonymous 409 instead of a 201 would still betray it)."""
    sh, _ed = await writers(client, auth)
    creator = auth("system", org="Organization/feed", scope="system/Flag.c")
    risk = flag("exploitation-risk", CHILD, SH)
    assert (await client.post("/fhir/Flag", json=risk, headers=sh)).status_code == 201
    r = await client.post("/fhir/Flag", json=risk, headers=creator)
    assert r.status_code == 201, r.text

"""The CP-IS-style check end to end on both databases (contract section 5): an unscheduled-care system
that knows only the NHS number gets the child's active flags and the owning organisation with its
office-hours and out-of-hours numbers in one call; an unborn child's plan is found under the mother's."""

from __future__ import annotations

from typing import Any

import httpx

from tests.safeguarding.support import (
    CHILD,
    CHILD_NHS,
    CS,
    LA,
    MOTHER_NHS,
    NHS,
    OFFICE_HOURS,
    OUT_OF_HOURS,
    ZERO19,
    borough,
    by_nhs,
    example,
    flag,
    ids,
    local_authority,
    post,
    put,
    reason,
)


def cpis(nhs: str) -> str:
    return f"/fhir/Flag?patient:identifier={NHS}|{nhs}&status=active&_include=Flag:author"


async def test_cpis_check_by_nhs_number(client: httpx.AsyncClient) -> None:
    await borough(client)
    plan = await put(client, example("example-child-protection-plan"))  # by reference, the local authority's
    risk = await post(client, flag("exploitation-risk", by_nhs(CHILD_NHS), author=ZERO19))  # by NHS number only
    ended = await post(client, flag("looked-after-child", CHILD))
    r = await client.put(f"/fhir/Flag/{ended['id']}", json={**ended, "status": "inactive", "extension": [reason()]})
    assert r.status_code == 200
    unborn = await put(client, example("example-unborn-child-protection-plan"))

    r = await client.get(cpis(CHILD_NHS))
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["total"] == 2
    assert [(e["search"]["mode"], e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]] == [
        ("match", "Flag", plan["id"]), ("match", "Flag", risk["id"]),
        ("include", "Organization", "example-local-authority"), ("include", "Organization", "example-zero-to-nineteen"),
    ]
    owner = bundle["entry"][2]["resource"]
    assert owner["telecom"] == [OFFICE_HOURS, OUT_OF_HOURS]
    assert owner["contact"] == local_authority()["contact"]  # which number is which, for the banner
    assert bundle["entry"][0]["resource"]["author"] == {"reference": LA, "display": "Example Borough Children's Services"}

    # the unborn child's plan sits under the mother's NHS number, not the child's
    assert await ids(client, cpis(MOTHER_NHS)) == [
        ("match", "Flag", unborn["id"]), ("include", "Organization", "example-local-authority")]
    # the ended flag stays readable and searchable, just not active
    assert await ids(client, f"/fhir/Flag?patient:identifier={NHS}|{CHILD_NHS}&status=inactive") == [
        ("match", "Flag", ended["id"])]
    # an NHS number with no flags: an empty searchset, not an error
    r = await client.get(cpis("9990000042"))
    assert (r.status_code, r.json()["total"], "entry" in r.json()) == (200, 0, False)


async def test_an_unscheduled_care_check_notifies_the_owner_once(client: httpx.AsyncClient, auth: Any) -> None:
    await borough(client)
    plan = await put(client, example("example-child-protection-plan"))
    notified = "/fhir/Communication?category=" + CS + "safeguarding-communication-category|access-notification"
    ed = auth("ed-clinician", org="Organization/ed", practitioner="Practitioner/ed-nurse", care_setting="310000008")
    hv = auth("health-visitor", org=ZERO19, care_setting="1078501000000104")
    assert (await client.get(cpis(CHILD_NHS), headers={**ed, "X-Access-Context": "scheduled"})).status_code == 200
    assert (await client.get(cpis(CHILD_NHS), headers=hv)).status_code == 200
    assert (await client.get(notified)).json()["total"] == 0  # silent reads
    for url in (cpis(CHILD_NHS), f"/fhir/Flag/{plan['id']}", cpis(CHILD_NHS)):
        assert (await client.get(url, headers=ed)).status_code == 200
    [note] = [e["resource"] for e in (await client.get(notified)).json()["entry"]]
    assert (note["recipient"], note["subject"], note["about"], note["sender"]) == (
        [{"reference": LA}], {"reference": CHILD}, [{"reference": f"Flag/{plan['id']}"}],
        {"reference": "Organization/ed"})

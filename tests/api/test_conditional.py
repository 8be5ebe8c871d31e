"""Conditional create, update and delete (https://hl7.org/fhir/R4/http.html#ccreate, #cond-update,
#cdelete) on both databases, with HAPI's 0 / 1 / many answers, and criteria that can never mean
"match everything"."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fhir_data import NHS, count, create, instant, location, nhs_query, outcome, patient

TWO = outcome("multiple-matches", "SF-0412: The conditional create criteria match more than one resource")


@pytest.mark.parametrize("form", ["header", "query"])
async def test_conditional_create(client: httpx.AsyncClient, form: str) -> None:
    def send(resource: dict, criteria: str) -> object:
        if form == "header":
            return client.post("/fhir/Patient", json=resource, headers={"If-None-Exist": criteria})
        return client.post(f"/fhir/Patient?{criteria}", json=resource)  # as fhirpy's get_or_create sends it

    first = await send(patient(), nhs_query("9990000018"))  # tick 1
    assert first.status_code == 201
    pid = first.json()["id"]
    again = await send(patient(family="Other"), nhs_query("9990000018"))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["location"] == location("Patient", pid, 1)
    assert again.headers["etag"] == 'W/"1"'
    await create(client, patient("9990000026", family="Smith"))
    many = await send(patient("9990000034"), "family=Smith")
    assert (many.status_code, many.json()) == (412, TWO)
    assert await count(client, "Patient") == 2


async def test_if_none_exist_header_forms(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    for header in (
        f"Patient?{nhs_query('9990000018')}",
        f"?{nhs_query('9990000018')}",
        f"http://127.0.0.1:8080/fhir/Patient?{nhs_query('9990000018')}",
    ):
        r = await client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": header})
        assert (r.status_code, r.json()["id"]) == (200, pid)
    r = await client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": "Flag?status=active"})
    assert r.status_code == 400
    assert r.json() == outcome(
        "invalid",
        "SF-0112: If-None-Exist criteria 'Flag?status=active' are for Flag, not Patient",
        ["If-None-Exist"],
    )


async def test_conditional_create_never_matches_everything(client: httpx.AsyncClient) -> None:
    await create(client, patient())
    r = await client.post(
        "/fhir/Patient", json=patient("9990000026"), headers={"If-None-Exist": "shoe-size=9"}
    )
    assert r.status_code == 400
    assert r.json() == outcome(
        "not-supported", "SF-0400: Unknown search parameter 'shoe-size' for Patient", ["shoe-size"]
    )
    for empty in ("", "Patient?", "&&"):  # a present but empty If-None-Exist is not a plain create
        r = await client.post("/fhir/Patient", json=patient("9990000026"), headers={"If-None-Exist": empty})
        assert (r.status_code, r.json()) == (
            400,
            outcome("invalid", "SF-0111: A conditional create needs search parameters"),
        )
    r = await client.post("/fhir/Patient?_count=1", json=patient("9990000026"))
    assert r.status_code == 400
    assert r.json() == outcome(
        "invalid",
        "SF-0111: '_count' is not a search criterion and cannot select the resource of a conditional create",
        ["_count"],
    )
    r = await client.post("/fhir/Patient?_format=json", json=patient("9990000026"))  # not conditional at all
    assert r.status_code == 201
    assert await count(client, "Patient") == 2


async def test_conditional_create_validates_before_matching(client: httpx.AsyncClient) -> None:
    await create(client, patient())
    r = await client.post(f"/fhir/Patient?{nhs_query('9990000018')}", json=patient("9990000019"))
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Patient.identifier[0].value"]


async def test_conditional_update(client: httpx.AsyncClient) -> None:
    url = f"/fhir/Patient?{nhs_query('9990000018')}"
    made = await client.put(url, json=patient())  # no match, no id: create (tick 1)
    assert made.status_code == 201
    pid = made.json()["id"]
    assert made.headers["location"] == location("Patient", pid, 1)
    updated = await client.put(url, json=patient(family="Jones"))  # one match: update (tick 2)
    assert updated.status_code == 200
    assert updated.json()["id"] == pid
    assert updated.json()["meta"] == {"versionId": "2", "lastUpdated": instant(2)}
    assert updated.headers["location"] == updated.headers["content-location"] == location("Patient", pid, 2)
    stale = await client.put(url, json=patient(family="Brown"), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    wrong_id = await client.put(url, json={**patient(), "id": "someone-else"})
    assert wrong_id.status_code == 400
    assert wrong_id.json() == outcome(
        "invalid",
        f"SF-0103: Resource id 'someone-else' does not match the matched resource {pid}",
        ["Patient.id"],
    )
    with_id = await client.put(
        f"/fhir/Patient?{nhs_query('9990000026')}", json={**patient("9990000026"), "id": "p2"}
    )
    assert with_id.status_code == 201  # no match but an id: update-as-create with that id
    assert with_id.json()["id"] == "p2"
    assert with_id.headers["location"] == location("Patient", "p2", 1)
    elsewhere = await client.put(
        f"/fhir/Patient?{nhs_query('9990000034')}", json={**patient("9990000034"), "id": pid}
    )
    assert (elsewhere.status_code, elsewhere.json()) == (
        409,
        outcome(
            "duplicate",
            f"SF-0414: Patient/{pid} exists but does not match the conditional update criteria",
            ["Patient.id"],
        ),
    )
    many = await client.put("/fhir/Patient?birthdate=2020-02-03", json=patient())
    assert (many.status_code, many.json()) == (
        412,
        outcome("multiple-matches", "SF-0412: The conditional update criteria match more than one resource"),
    )
    bad = await client.put("/fhir/Patient?shoe-size=9", json=patient())
    assert bad.status_code == 400
    none = await client.put("/fhir/Patient", json=patient())
    assert (none.status_code, none.json()) == (
        400,
        outcome("invalid", "SF-0111: A conditional update needs search parameters"),
    )
    assert await count(client, "Patient") == 2


async def test_conditional_delete(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    await create(client, patient("9990000026"))
    none = await client.delete(f"/fhir/Patient?{nhs_query('9990000034')}")
    assert (none.status_code, none.content, "etag" in none.headers) == (204, b"", False)
    many = await client.delete("/fhir/Patient?birthdate=2020-02-03")
    assert (many.status_code, many.json()) == (
        412,
        outcome("multiple-matches", "SF-0412: The conditional delete criteria match more than one resource"),
    )
    unknown = await client.delete("/fhir/Patient?shoe-size=9")
    assert (unknown.status_code, unknown.json()) == (
        400,
        outcome("not-supported", "SF-0400: Unknown search parameter 'shoe-size' for Patient", ["shoe-size"]),
    )
    everything = await client.delete("/fhir/Patient?_sort=birthdate")
    assert everything.status_code == 400
    nothing = await client.delete("/fhir/Patient")
    assert (nothing.status_code, nothing.json()) == (
        400,
        outcome("invalid", "SF-0111: A conditional delete needs search parameters"),
    )
    one = await client.delete(f"/fhir/Patient?identifier={NHS}|9990000018")
    assert (one.status_code, one.headers["etag"]) == (204, 'W/"2"')
    assert (await client.get(f"/fhir/Patient/{pid}")).status_code == 410
    assert await count(client, "Patient") == 1
    flags = await client.delete("/fhir/Flag?status=active")
    assert (flags.status_code, flags.json()) == (
        405,
        outcome("not-supported", "SF-0405: Flag resources are never deleted; change their status instead"),
    )

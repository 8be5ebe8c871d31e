"""Concurrent writes of one resource behave alike on both databases (https://hl7.org/fhir/R4/http.html#concurrency):
20 requests at once through the app, each in its own transaction and connection. Unconditional PUTs
and PATCHes all succeed, one after another, with consecutive versions and none lost; of PUTs that all
carry the same If-Match exactly one wins and the others answer 412, as a stale If-Match does. On
PostgreSQL they used to race (409 SF-0409); SQLite runs write transactions one at a time. Conditional
updates and patches (by identifier) too."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from tests.support.fhir_data import outcome

N = 20


def person(given: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith", "given": [given]}]}


async def versions(client: httpx.AsyncClient) -> dict[int, str]:
    """versionId -> the given name each stored version holds (the whole history)."""
    r = await client.get("/fhir/Patient/p1/_history", params={"_count": 100})
    assert r.status_code == 200, r.text
    return {int(e["resource"]["meta"]["versionId"]): e["resource"]["name"][0]["given"][0] for e in r.json()["entry"]}


async def test_concurrent_unconditional_puts_all_succeed(client: httpx.AsyncClient) -> None:
    r = await client.put("/fhir/Patient/p1", json=person("v1"))
    assert r.status_code == 201
    answers = await asyncio.gather(*(client.put("/fhir/Patient/p1", json=person(f"w{i}")) for i in range(N)))
    assert [r.status_code for r in answers] == [200] * N, [r.text for r in answers if r.status_code != 200]
    got = {int(r.json()["meta"]["versionId"]): r.json()["name"][0]["given"][0] for r in answers}
    assert sorted(got) == list(range(2, N + 2))  # one version each, consecutive
    assert await versions(client) == {1: "v1", **got}  # each answer is what its version holds: none lost


async def test_concurrent_puts_creating_one_resource(client: httpx.AsyncClient) -> None:
    """Update-as-create raced by N clients: the first creates it (201), the others update it."""
    answers = await asyncio.gather(*(client.put("/fhir/Patient/p1", json=person(f"w{i}")) for i in range(N)))
    assert sorted(r.status_code for r in answers) == [200] * (N - 1) + [201], [r.text for r in answers]
    got = {int(r.json()["meta"]["versionId"]): r.json()["name"][0]["given"][0] for r in answers}
    assert sorted(got) == list(range(1, N + 1))
    assert next(r for r in answers if r.status_code == 201).json()["meta"]["versionId"] == "1"
    assert await versions(client) == got


async def test_concurrent_patches_all_apply(client: httpx.AsyncClient) -> None:
    """Each JSON Patch appends one name: all N are there afterwards, so none was applied to a stale copy."""
    r = await client.put("/fhir/Patient/p1", json=person("v1"))
    assert r.status_code == 201
    answers = await asyncio.gather(*(
        client.patch("/fhir/Patient/p1", content=orjson.dumps([{"op": "add", "path": "/name/-", "value": {
            "family": f"n{i}"}}]), headers={"Content-Type": "application/json-patch+json"})
        for i in range(N)
    ))
    assert [r.status_code for r in answers] == [200] * N, [r.text for r in answers if r.status_code != 200]
    assert sorted(int(r.json()["meta"]["versionId"]) for r in answers) == list(range(2, N + 2))
    final = (await client.get("/fhir/Patient/p1")).json()
    assert final["meta"]["versionId"] == str(N + 1)
    assert sorted(n["family"] for n in final["name"][1:]) == sorted(f"n{i}" for i in range(N))


async def test_same_if_match_race_one_wins_the_rest_412(client: httpx.AsyncClient) -> None:
    r = await client.put("/fhir/Patient/p1", json=person("v1"))
    assert r.status_code == 201
    answers = await asyncio.gather(*(
        client.put("/fhir/Patient/p1", json=person(f"w{i}"), headers={"If-Match": 'W/"1"'}) for i in range(N)
    ))
    assert sorted(r.status_code for r in answers) == [200] + [412] * (N - 1), [r.text for r in answers]
    winner = next(r for r in answers if r.status_code == 200)
    assert winner.json()["meta"]["versionId"] == "2"
    for r in answers:
        if r.status_code == 412:
            assert r.json() == outcome(
                "conflict", "SF-0413: If-Match version 1 does not match the current version 2 of Patient/p1")
    assert await versions(client) == {1: "v1", 2: winner.json()["name"][0]["given"][0]}


async def test_concurrent_conditional_updates_and_patches_all_apply(client: httpx.AsyncClient) -> None:
    """`PUT Patient?identifier=...` and `PATCH Patient?identifier=...` racing on one Patient: each
    writes over the version before it, none answers 409."""
    ident = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}
    r = await client.put("/fhir/Patient/p1", json={**person("v1"), "identifier": [ident]})
    assert r.status_code == 201
    url = f"/fhir/Patient?identifier={ident['system']}|{ident['value']}"
    puts = [client.put(url, json={**person(f"w{i}"), "identifier": [ident]}) for i in range(N // 2)]
    patches = [client.patch(url, content=orjson.dumps([{"op": "add", "path": "/name/-", "value": {"family": f"n{i}"}}]),
                            headers={"Content-Type": "application/json-patch+json"}) for i in range(N // 2)]
    answers = await asyncio.gather(*puts, *patches)
    assert [r.status_code for r in answers] == [200] * N, [r.text for r in answers if r.status_code != 200]
    assert sorted(int(r.json()["meta"]["versionId"]) for r in answers) == list(range(2, N + 2))
    history = (await client.get("/fhir/Patient/p1/_history", params={"_count": 100})).json()
    assert history["total"] == N + 1

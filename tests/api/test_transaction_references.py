"""Transaction references (https://hl7.org/fhir/R4/bundle.html#references, http.html#trules) on both
databases: `urn:uuid:` placeholders get their ids before any write and are rewritten in every
resource; conditional references resolve to exactly one match (none 404, several 412, as HAPI);
ifNoneExist and conditional updates give a placeholder the id of the resource they match."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import FHIR
from tests.support.fhir_data import (
    NHS,
    count,
    create,
    created_response,
    flag,
    instant,
    location,
    nhs_query,
    organization,
    outcome,
    patient,
    post,
    req,
    tx,
)


def created(rtype: str, rid: str, second: int, resource: dict[str, Any]) -> dict[str, Any]:
    """The transaction-response entry of a create at the clock's n-th tick."""
    meta = {"versionId": "1", "lastUpdated": instant(second)}
    return {
        "fullUrl": f"{FHIR}/{rtype}/{rid}",
        "resource": {
            "resourceType": rtype,
            "id": rid,
            "meta": meta,
            **{k: v for k, v in resource.items() if k != "resourceType"},
        },
        "response": created_response(rtype, rid, second),
    }


def ids(body: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] if "resource" in e else "" for e in body["entry"]]


async def test_placeholders_get_ids_and_every_reference_is_rewritten(client: httpx.AsyncClient) -> None:
    bundle = tx(
        post(flag("urn:uuid:p1", "urn:uuid:o1"), "urn:uuid:f1"),
        post(
            patient(
                managingOrganization={"reference": "urn:uuid:o1"},
                generalPractitioner=[{"reference": "urn:uuid:o1", "display": "GP"}],
            ),
            "urn:uuid:p1",
        ),
        post(organization(), "urn:uuid:o1"),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    body = r.json()
    fid, pid, oid = ids(body)
    assert body == {
        "resourceType": "Bundle",
        "id": body["id"],
        "type": "transaction-response",
        "entry": [
            created("Flag", fid, 1, flag(f"Patient/{pid}", f"Organization/{oid}")),
            created(
                "Patient",
                pid,
                2,
                patient(
                    managingOrganization={"reference": f"Organization/{oid}"},
                    generalPractitioner=[{"reference": f"Organization/{oid}", "display": "GP"}],
                ),
            ),
            created("Organization", oid, 3, organization()),
        ],
    }
    stored = (await client.get(f"/fhir/Flag/{fid}")).json()
    assert stored["subject"] == {"reference": f"Patient/{pid}"}
    found = (await client.get(f"/fhir/Flag?patient:identifier={NHS}|9990000018")).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [fid]


async def test_narrative_and_attachment_placeholders_are_rewritten(client: httpx.AsyncClient) -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml">See <a href="urn:uuid:o1">the team</a></div>'
    org = {**organization(), "text": {"status": "generated", "div": div}}
    pat = patient(photo=[{"contentType": "image/png", "url": "urn:uuid:o1"}])
    r = await client.post("/fhir", json=tx(post(org, "urn:uuid:o1"), post(pat)))
    oid, pid = ids(r.json())
    assert r.json()["entry"][0]["resource"]["text"]["div"] == div.replace(
        "urn:uuid:o1", f"Organization/{oid}"
    )
    assert (await client.get(f"/fhir/Patient/{pid}")).json()["photo"] == [
        {"contentType": "image/png", "url": f"Organization/{oid}"}
    ]


async def test_absolute_full_urls_of_creates_are_temporary_ids_too(client: httpx.AsyncClient) -> None:
    """R4: a POST's fullUrl is a temporary id whatever its form; a PUT's names the resource itself."""
    temp = "http://example.org/fhir/Organization/tmp1"
    own = f"{FHIR}/Patient/p9"
    bundle = tx(
        post(organization(), temp),
        {
            "fullUrl": own,
            "resource": {**patient(), "id": "p9"},
            "request": {"method": "PUT", "url": "Patient/p9"},
        },
        post(flag(own, temp)),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    oid = r.json()["entry"][0]["resource"]["id"]
    assert oid != "tmp1"
    assert r.json()["entry"][2]["resource"]["subject"] == {"reference": "Patient/p9"}
    assert r.json()["entry"][2]["resource"]["author"] == {"reference": f"Organization/{oid}"}


async def test_unresolved_placeholder_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/fhir", json=tx(post(flag("urn:uuid:nobody", "urn:uuid:o1")), post(organization(), "urn:uuid:o1"))
    )
    assert r.status_code == 400
    assert r.json() == outcome(
        "not-found",
        "SF-0629: Bundle.entry[0] (POST Flag): Reference 'urn:uuid:nobody' names no entry of this Bundle",
        ["Bundle.entry[0].resource.subject.reference"],
    )
    assert await count(client, "Organization") == 0


async def test_conditional_references_resolve_to_one_match(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient("9990000018"))
    oid = await create(client, organization())
    ref = f"Patient?{nhs_query('9990000018')}"
    r = await client.post("/fhir", json=tx(post(flag(ref, f"Organization?_id={oid}"))))
    assert r.status_code == 200
    assert r.json()["entry"][0]["resource"]["subject"] == {"reference": f"Patient/{pid}"}
    assert r.json()["entry"][0]["resource"]["author"] == {"reference": f"Organization/{oid}"}

    none = await client.post(
        "/fhir", json=tx(post(flag(f"Patient?{nhs_query('9990000026')}", f"Organization/{oid}")))
    )
    assert none.status_code == 404
    assert none.json() == outcome(
        "not-found",
        f"SF-0304: Bundle.entry[0] (POST Flag): Conditional reference 'Patient?{nhs_query('9990000026')}' "
        "matches no resource",
        ["Bundle.entry[0]"],
    )
    await create(client, patient("9990000026", "Twin"))
    await create(client, patient("9990000034", "Twin"))
    many = await client.post("/fhir", json=tx(post(flag("Patient?family=Twin", f"Organization/{oid}"))))
    assert many.status_code == 412
    assert many.json() == outcome(
        "multiple-matches",
        "SF-0412: Bundle.entry[0] (POST Flag): Conditional reference 'Patient?family=Twin' matches more than "
        "one resource",
        ["Bundle.entry[0]"],
    )
    unknown = await client.post("/fhir", json=tx(post(flag("Patient?shoe-size=9", f"Organization/{oid}"))))
    assert unknown.status_code == 400
    assert unknown.json() == outcome(
        "not-supported",
        "SF-0400: Bundle.entry[0] (POST Flag): Unknown search parameter 'shoe-size' for Patient",
        ["Bundle.entry[0]", "shoe-size"],
    )
    assert await count(client, "Flag") == 1


async def test_if_none_exist_maps_the_placeholder_to_the_existing_resource(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient("9990000018"))  # tick 1
    bundle = tx(
        post(patient("9990000018", "Other"), "urn:uuid:p1", ifNoneExist=nhs_query("9990000018")),
        post(organization(), "urn:uuid:o1"),
        post(flag("urn:uuid:p1", "urn:uuid:o1")),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    first, _, third = r.json()["entry"]
    assert first == {
        "fullUrl": f"{FHIR}/Patient/{pid}",
        "resource": {
            **patient("9990000018"),
            "id": pid,
            "meta": {"versionId": "1", "lastUpdated": instant(1)},
        },
        "response": {
            "status": "200 OK",
            "location": location("Patient", pid, 1),
            "etag": 'W/"1"',
            "lastModified": instant(1),
        },
    }
    assert third["resource"]["subject"] == {"reference": f"Patient/{pid}"}
    assert await count(client, "Patient") == 1


async def test_conditional_reference_to_a_conditional_create_of_the_same_bundle(
    client: httpx.AsyncClient,
) -> None:
    criteria = nhs_query("9990000042")
    bundle = tx(
        post(flag(f"Patient?{criteria}", "urn:uuid:o1")),
        post(patient("9990000042"), "urn:uuid:p1", ifNoneExist=f"Patient?{criteria}"),
        post(organization(), "urn:uuid:o1"),
    )
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    fl, pat, _ = r.json()["entry"]
    assert fl["resource"]["subject"] == {"reference": f"Patient/{pat['resource']['id']}"}


async def test_conditional_update_and_delete_entries(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient("9990000018"))
    doomed = await create(client, patient("9990000026"))
    bundle = tx(
        req("PUT", f"Patient?{nhs_query('9990000018')}", patient("9990000018", "Renamed")),
        req(
            "PUT",
            f"Patient?{nhs_query('9990000034')}",
            patient("9990000034", "Fresh"),
        ),
        req("DELETE", f"Patient?{nhs_query('9990000026')}"),
    )
    bundle["entry"][1]["fullUrl"] = "urn:uuid:new"
    bundle["entry"].append(post(flag("urn:uuid:new", "Organization/la")))  # a SafeguardingFlag author
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 200
    upd, new, dele, fl = r.json()["entry"]
    assert upd["response"] == {"status": "200 OK", "location": location("Patient", pid, 2), "etag": 'W/"2"',
                               "lastModified": instant(5)}
    assert upd["resource"]["id"] == pid
    new_id = new["resource"]["id"]
    assert new["response"]["status"] == "201 Created"
    assert fl["resource"]["subject"] == {"reference": f"Patient/{new_id}"}
    assert dele["response"] == {"status": "204 No Content", "etag": 'W/"2"', "lastModified": instant(3)}
    assert (await client.get(f"/fhir/Patient/{doomed}")).status_code == 410

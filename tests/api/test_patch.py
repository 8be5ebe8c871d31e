"""PATCH (https://hl7.org/fhir/R4/http.html#patch): JSON Patch and JSON merge patch on both databases,
If-Match, the 400/422 split, validation of the result, no-op patches and conditional patch."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.support.fhir_data import NHS, create, instant, location, nhs_query, outcome, patient

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


async def patch(
    client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.patch(url, content=orjson.dumps(body), headers={**JSON_PATCH, **(headers or {})})


async def test_json_patch_makes_a_new_version(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    ops = [
        {"op": "test", "path": "/name/0/family", "value": "Smith"},
        {"op": "replace", "path": "/name/0/family", "value": "Jones"},
        {"op": "add", "path": "/gender", "value": "female"},
    ]
    r = await patch(client, f"/fhir/Patient/{pid}", ops, {"If-Match": 'W/"1"'})
    assert r.status_code == 200
    expected = {
        **patient(family="Jones"),
        "gender": "female",
        "id": pid,
        "meta": {"versionId": "2", "lastUpdated": instant(2)},
    }
    assert r.json() == {
        "resourceType": "Patient",
        "id": pid,
        "meta": expected["meta"],
        **{k: v for k, v in expected.items() if k not in ("resourceType", "id", "meta")},
    }
    assert r.headers["etag"] == 'W/"2"'
    assert r.headers["last-modified"] == "Mon, 05 Jan 2026 09:00:02 GMT"
    # HAPI's generic client takes a write's id from these
    assert r.headers["location"] == r.headers["content-location"] == location("Patient", pid, 2)
    assert (await client.get(f"/fhir/Patient/{pid}")).json() == r.json()


async def test_merge_patch_and_fhirpy_style_plain_json(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient(gender="male"))
    r = await client.patch(
        f"/fhir/Patient/{pid}", content=orjson.dumps({"gender": None, "active": True}), headers=MERGE_PATCH
    )
    assert r.status_code == 200
    assert "gender" not in r.json() and r.json()["active"] is True
    # fhirpy sends a merge patch as application/json; a JSON array there is a JSON Patch
    r = await client.patch(f"/fhir/Patient/{pid}", json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["meta"]["versionId"] == "3"
    r = await client.patch(f"/fhir/Patient/{pid}", json=[{"op": "remove", "path": "/active"}])
    assert r.status_code == 200 and "active" not in r.json()


async def test_if_match_mismatch_is_412(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    r = await patch(
        client, f"/fhir/Patient/{pid}", [{"op": "remove", "path": "/birthDate"}], {"If-Match": "2"}
    )
    assert r.status_code == 412
    assert r.json() == outcome(
        "conflict", f"SF-0413: If-Match version 2 does not match the current version 1 of Patient/{pid}"
    )


async def test_failing_test_op_and_bad_paths_are_422(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    url = f"/fhir/Patient/{pid}"
    r = await patch(client, url, [{"op": "test", "path": "/name/0/family", "value": "Jones"}])
    assert r.status_code == 422
    assert r.json() == outcome(
        "processing",
        "SF-0123: JSON Patch test failed: Smith (<class 'str'>) is not equal "
        "to tested value Jones (<class 'str'>)",
    )
    r = await patch(client, url, [{"op": "remove", "path": "/gender"}])
    assert r.status_code == 422
    assert r.json() == outcome(
        "processing", "SF-0124: JSON Patch cannot be applied: can't remove a non-existent object 'gender'"
    )
    r = await patch(client, url, [{"op": "replace", "path": "/name/5/family", "value": "X"}])
    assert r.status_code == 422
    assert r.json() == outcome(
        "processing", "SF-0124: JSON Patch cannot be applied: index '5' is out of bounds"
    )
    assert (await client.get(url)).json()["meta"]["versionId"] == "1"


async def test_malformed_patches_are_400(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    url = f"/fhir/Patient/{pid}"
    r = await client.patch(url, content=b"[{", headers=JSON_PATCH)
    assert r.status_code == 400
    assert r.json()["issue"][0]["diagnostics"].startswith("SF-0012: The request body is not valid JSON")
    r = await patch(client, url, {"op": "remove", "path": "/gender"})
    assert r.status_code == 400
    assert r.json() == outcome("invalid", "SF-0120: A JSON Patch must be a JSON array of operations")
    r = await patch(client, url, [{"path": "/gender"}])
    assert r.status_code == 400
    assert r.json() == outcome(
        "invalid", "SF-0120: Invalid JSON Patch: Operation does not contain 'op' member"
    )
    r = await patch(client, url, [{"op": "frobnicate", "path": "/gender"}])
    assert r.json() == outcome("invalid", "SF-0120: Invalid JSON Patch: Unknown operation 'frobnicate'")
    r = await client.patch(url, content=b"[1]", headers=MERGE_PATCH)
    assert r.status_code == 400
    assert r.json() == outcome("invalid", "SF-0120: A JSON merge patch must be a JSON object")
    r = await client.patch(
        url, json={"resourceType": "Parameters"}, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 415
    assert r.json() == outcome(
        "not-supported",
        "SF-0125: FHIRPath Patch is not supported; send "
        "application/json-patch+json or application/merge-patch+json",
    )


async def test_patch_may_not_change_id_or_type(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    url = f"/fhir/Patient/{pid}"
    expected = outcome("processing", "SF-0122: A patch may not change resourceType or id", ["Patient.id"])
    for body in (
        [{"op": "replace", "path": "/id", "value": "other"}],
        [{"op": "remove", "path": "/id"}],
        [{"op": "replace", "path": "/resourceType", "value": "Practitioner"}],
    ):
        r = await patch(client, url, body)
        assert (r.status_code, r.json()) == (422, expected)
    r = await client.patch(url, content=b'{"id": "other"}', headers=MERGE_PATCH)
    assert (r.status_code, r.json()) == (422, expected)


async def test_the_result_is_validated_like_an_update(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    url = f"/fhir/Patient/{pid}"
    r = await patch(client, url, [{"op": "replace", "path": "/birthDate", "value": "yesterday"}])
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    r = await patch(client, url, [{"op": "add", "path": "/shoeSize", "value": 9}])
    assert r.status_code == 400
    # the validator's own wording is tested with the validator; here: same status, code and place as an update
    issue = r.json()["issue"][0]
    assert (issue["code"], issue["expression"]) == ("structure", ["Patient.shoeSize"])
    r = await patch(client, url, [{"op": "replace", "path": "/identifier/0/value", "value": "9990000019"}])
    assert r.status_code == 422
    assert r.json() == outcome(
        "business-rule",
        "SF-0201: '9990000019' is not a valid NHS number (ten digits with a Modulus 11 check digit)",
        ["Patient.identifier[0].value"],
    )
    r = await client.patch(url, content=b'{"gender": "bogus"}', headers=MERGE_PATCH)
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "code-invalid"
    assert (await client.get(url)).json()["meta"]["versionId"] == "1"


async def test_a_no_op_patch_creates_no_version(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())  # tick 1
    r = await patch(
        client, f"/fhir/Patient/{pid}", [{"op": "replace", "path": "/name/0/family", "value": "Smith"}]
    )
    assert r.status_code == 200
    assert r.json()["meta"] == {"versionId": "1", "lastUpdated": instant(1)}
    assert r.headers["etag"] == 'W/"1"'
    r = await client.patch(f"/fhir/Patient/{pid}", content=b"{}", headers=MERGE_PATCH)
    assert r.json()["meta"]["versionId"] == "1"
    assert (await client.get(f"/fhir/Patient/{pid}/_history")).json()["total"] == 1


async def test_patch_of_unknown_deleted_and_never_writable(client: httpx.AsyncClient) -> None:
    ops = [{"op": "add", "path": "/active", "value": True}]
    r = await patch(client, "/fhir/Patient/nobody", ops)
    assert (r.status_code, r.json()) == (
        404,
        outcome("not-found", "SF-0301: Patient/nobody is not known", ["id"]),
    )
    pid = await create(client, patient())
    await client.delete(f"/fhir/Patient/{pid}")
    r = await patch(client, f"/fhir/Patient/{pid}", ops)
    assert (r.status_code, r.json()) == (410, outcome("deleted", f"SF-0302: Patient/{pid} was deleted"))
    r = await patch(client, "/fhir/AuditEvent/a1", ops)
    assert r.status_code == 405
    assert r.json()["issue"][0]["diagnostics"].startswith("SF-0406: AuditEvent is written by the server only")


async def test_conditional_patch(client: httpx.AsyncClient) -> None:
    pid = await create(client, patient())
    ops = [{"op": "add", "path": "/active", "value": True}]
    r = await patch(client, f"/fhir/Patient?{nhs_query('9990000018')}", ops)
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["active"] is True
    r = await patch(client, f"/fhir/Patient?{nhs_query('9990000026')}", ops)
    assert (r.status_code, r.json()) == (
        404,
        outcome("not-found", "SF-0304: The conditional patch criteria match no resource"),
    )
    await create(client, patient("9990000026"))
    r = await patch(client, "/fhir/Patient?family=Smith", ops)
    assert r.status_code == 412
    assert r.json() == outcome(
        "multiple-matches", "SF-0412: The conditional patch criteria match more than one resource"
    )
    r = await patch(client, "/fhir/Patient", ops)
    assert (r.status_code, r.json()) == (
        400,
        outcome("invalid", "SF-0111: A conditional patch needs search parameters"),
    )
    assert (await client.get(f"/fhir/Patient?identifier={NHS}|9990000026")).json()["entry"][0][
        "resource"
    ].get("active") is None

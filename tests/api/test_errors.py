"""No 500 for any client input: every malformed request gets the exact OperationOutcome, status and
headers a FHIR client expects (https://hl7.org/fhir/R4/http.html#summary), on both databases."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.context import AppContext
from app.main import create_app
from tests.conftest import BASE_URL, admin_token
from tests.support.fhir_data import outcome, patient

FHIR_JSON = {"content-type": "application/fhir+json"}
NOT_OBJECT = outcome("invalid", "SF-0100: The body must be a JSON object holding a FHIR resource")


def assert_outcome(r: httpx.Response, status: int, body: dict[str, Any]) -> None:
    assert (r.status_code, r.json()) == (status, body)
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert r.headers["x-request-id"]


@pytest.mark.parametrize("raw", [b"[1]", b"[]", b"null", b"42", b'"Patient"', b"true"])
async def test_json_that_is_not_an_object(client: httpx.AsyncClient, raw: bytes) -> None:
    assert_outcome(await client.post("/fhir/Patient", content=raw, headers=FHIR_JSON), 400, NOT_OBJECT)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"resourceType":"Patient"', "unexpected end of data: line 1 column 26 (char 25)"),
        (b'{"resourceType":"Patient","multipleBirthInteger":NaN}',
         "unexpected character, expected a JSON value: line 1 column 50 (char 49)"),
        (b"1e400", "number is infinity when parsed as double: line 1 column 1 (char 0)"),
        (b'{"resourceType":"Patient","gender":"\xff"}',
         "str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0)"),
        (b"\xff\xfe{}", "str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0)"),
    ],
)
async def test_body_that_is_not_json(client: httpx.AsyncClient, raw: bytes, reason: str) -> None:
    r = await client.post("/fhir/Patient", content=raw, headers=FHIR_JSON)
    assert_outcome(r, 400, outcome("invalid", f"SF-0012: The request body is not valid JSON: {reason}"))


@pytest.mark.parametrize("raw", [b"", b"  \n "])
async def test_empty_body(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post("/fhir/Patient", content=raw, headers=FHIR_JSON)
    assert_outcome(r, 400, outcome("invalid", "SF-0012: The request body is empty"))


async def test_byte_order_mark_is_ignored(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=b'\xef\xbb\xbf{"resourceType":"Patient","gender":"female"}',
                          headers=FHIR_JSON)
    assert r.status_code == 201
    assert r.json()["gender"] == "female"


async def test_nesting_deeper_than_any_resource(client: httpx.AsyncClient) -> None:
    ok = '{"resourceType":"Patient","extension":[' + '{"url":"http://x","extension":[' * 20 + \
        '{"url":"y","valueString":"z"}' + "]}" * 20 + "]}"
    assert (await client.post("/fhir/Patient", content=ok.encode(), headers=FHIR_JSON)).status_code == 201
    deep = '{"resourceType":"Patient","extension":' + "[" * 1000 + "]" * 1000 + "}"
    r = await client.post("/fhir/Patient", content=deep.encode(), headers=FHIR_JSON)
    assert_outcome(r, 400, outcome("invalid", "SF-0015: The request body nests JSON deeper than 64 levels"))


async def test_numbers_beyond_fhir_ranges(client: httpx.AsyncClient) -> None:
    r = await client.post("/fhir/Patient", content=b'{"resourceType":"Patient","multipleBirthInteger":'
                                                   b"123456789012345678901234567890}", headers=FHIR_JSON)
    assert_outcome(r, 400, outcome(
        "value", "SF-0109: 1.2345678901234568e+29 is not an integer (integer) at Patient.multipleBirthInteger",
        ["Patient.multipleBirthInteger"]))
    r = await client.post("/fhir/Patient", json={"resourceType": "Patient", "multipleBirthInteger": 2**31})
    assert_outcome(r, 400, outcome(
        "value", "SF-0109: 2147483648 is out of range for integer (-2147483648..2147483647) at "
        "Patient.multipleBirthInteger", ["Patient.multipleBirthInteger"]))


async def test_unknown_contained_resource_type(client: httpx.AsyncClient) -> None:
    body = {"resourceType": "Patient", "contained": [{"resourceType": "Nope", "id": "a"}]}
    assert_outcome(await client.post("/fhir/Patient", json=body), 400, outcome(
        "structure", "SF-0117: 'Nope' is not a FHIR resource type", ["Patient.contained[0].resourceType"]))


@pytest.mark.parametrize("path, body, expected", [
    # org-1..3 iterate `telecom`; a number there once reached them and answered 500
    ("/fhir/Organization", {"resourceType": "Organization", "name": "x", "telecom": 2.5},
     outcome("structure", "SF-0108: Element 'telecom' must be an array", ["Organization.telecom"])),
    # ref-1 collects the contained ids; an array there was unhashable and answered 500
    ("/fhir/Task", {"resourceType": "Task", "status": "requested", "intent": "order",
                    "contained": [{"resourceType": "Organization", "id": ["org"], "name": "x"}]},
     outcome("structure", "SF-0108: Element 'id' must be a single value, not an array",
             ["Task.contained[0].id"])),
])
async def test_malformed_elements_never_reach_the_invariants_as_a_500(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert_outcome(await client.post(path, json=body), 400, expected)
    rtype = path.rsplit("/", 1)[1]
    r = await client.post(f"{path}/$validate", json=body)
    assert (r.status_code, r.json()) == (200, expected)
    assert (await client.get(f"/fhir/{rtype}")).json()["total"] == 0  # nothing was written


async def test_resource_type_must_match_the_url(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.post("/fhir/Patient", json={"resourceType": "Flag"}), 400, outcome(
        "invalid", "SF-0101: resourceType 'Flag' does not match the URL type 'Patient'", ["resourceType"]))


# -- media types ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["application/fhir+xml", "application/xml", "text/xml"])
async def test_xml_body_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    r = await client.post("/fhir/Patient", content=b'<Patient xmlns="http://hl7.org/fhir"/>',
                          headers={"content-type": content_type})
    assert_outcome(r, 415, outcome("not-supported", "SF-0011: XML is not supported; send application/fhir+json"))


async def test_other_body_type_is_415(client: httpx.AsyncClient) -> None:
    r = await client.put("/fhir/Patient/p1", content=b'{"resourceType":"Patient","id":"p1"}',
                         headers={"content-type": "text/plain"})
    assert_outcome(r, 415, outcome(
        "not-supported", "SF-0011: Content type 'text/plain' is not supported; send application/fhir+json"))


async def test_json_media_types_and_parameters_are_accepted(client: httpx.AsyncClient) -> None:
    for content_type in ("application/json", "application/fhir+json; fhirVersion=4.0", "application/json+fhir",
                         "application/fhir+json; charset=utf-8"):
        r = await client.post("/fhir/Patient", content=b'{"resourceType":"Patient"}',
                              headers={"content-type": content_type})
        assert r.status_code == 201, content_type


@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/metadata", "/fhir/Patient/p1", "/fhir/_history"])
async def test_accept_xml_is_406(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path, headers={"accept": "application/fhir+xml"})
    assert_outcome(r, 406, outcome(
        "not-supported", "SF-0010: Cannot produce 'application/fhir+xml'; this server speaks application/fhir+json"))


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "html"])
async def test_format_xml_is_406(client: httpx.AsyncClient, fmt: str) -> None:
    r = await client.get("/fhir/Patient", params={"_format": fmt})
    assert_outcome(r, 406, outcome(
        "not-supported", f"SF-0010: _format={fmt} is not supported; this server speaks application/fhir+json",
        ["_format"]))


async def test_json_formats_and_browsers_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/fhir/Patient", params={"_format": "json"})).status_code == 200
    assert (await client.get("/fhir/metadata", params={"_format": "application/fhir+json"})).status_code == 200
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert (await client.get("/fhir/metadata", headers={"accept": browser})).status_code == 200


# -- URLs -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), [("GET", "/fhir/Nope"), ("GET", "/fhir/Nope/1"),
                                              ("GET", "/fhir/Nope/_history")])
async def test_unknown_resource_type_is_404(client: httpx.AsyncClient, method: str, path: str) -> None:
    assert_outcome(await client.request(method, path), 404, outcome(
        "not-supported", "SF-0300: Resource type 'Nope' is not supported"))


async def test_create_of_unknown_resource_type_is_404(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.post("/fhir/Nope", json={"resourceType": "Nope"}), 404, outcome(
        "not-supported", "SF-0300: Resource type 'Nope' is not supported"))


@pytest.mark.parametrize("res_id", ["a%20b", "a_b", "x" * 65, "%C3%A9"])
async def test_invalid_id_in_url_is_400(client: httpx.AsyncClient, res_id: str) -> None:
    shown = httpx.URL("/" + res_id).path[1:]
    for method in ("GET", "DELETE"):
        assert_outcome(await client.request(method, f"/fhir/Patient/{res_id}"), 400, outcome(
            "invalid", f"SF-0102: '{shown}' is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)", ["id"]))


@pytest.mark.parametrize("version", ["abc", "2147483648", "99999999999999999999999", "%C2%B2"])
async def test_unknown_versions_are_404(client: httpx.AsyncClient, version: str) -> None:
    pid = (await client.post("/fhir/Patient", json=patient())).json()["id"]
    shown = httpx.URL("/" + version).path[1:]
    assert_outcome(await client.get(f"/fhir/Patient/{pid}/_history/{version}"), 404, outcome(
        "not-found", f"SF-0303: Version '{shown}' of Patient/{pid} is not known"))


async def test_if_match_that_is_not_a_version(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/fhir/Patient", json=patient())).json()["id"]
    r = await client.put(f"/fhir/Patient/{pid}", json={**patient(), "id": pid}, headers={"if-match": b'W/"\xc2\xb2"'})
    assert_outcome(r, 400, outcome("invalid", "SF-0110: Invalid version 'W/\"Â²\"' in If-Match", ["If-Match"]))


@pytest.mark.parametrize(("path", "status"), [
    ("/fhir/_history?_offset=99999999999999999999999999", 200),
    ("/fhir/Patient/_history?_count=99999999999999999999999999", 200),
    ("/fhir/Patient?_count=99999999999999999999999999", 200),
    ("/fhir/Patient?name=%FF%FE", 200),
    ("/fhir/Patient?%FF=1", 200),
])
async def test_extreme_query_values(client: httpx.AsyncClient, path: str, status: int) -> None:
    r = await client.get(path)
    assert r.status_code == status
    assert r.json()["resourceType"] == "Bundle"


async def test_non_ascii_digits_in_counts(client: httpx.AsyncClient) -> None:
    r = await client.get("/fhir/_history", params={"_count": "²"})
    assert_outcome(r, 400, outcome("invalid", "SF-0408: '_count' must be a non-negative integer, not '²'",
                                   ["_count"]))


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    assert_outcome(await client.get("/nope"), 404, outcome("not-found", "SF-H404: No such endpoint: GET /nope"))
    assert_outcome(await client.get("/fhir/Patient/1/_history/1/x"), 404, outcome(
        "not-found", "SF-H404: No such endpoint: GET /fhir/Patient/1/_history/1/x"))


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/healthz", "GET"),
    ("GET", "/fhir", "POST"),
    ("POST", "/fhir/Patient/1/_history", "GET"),
    ("DELETE", "/fhir/Patient/1/_history/1", "GET"),
])
async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient, method: str, path: str, allow: str) -> None:
    r = await client.request(method, path)
    assert_outcome(r, 405, outcome("not-supported", f"SF-H405: Method not allowed: {method} {path} (allowed: {allow})"))
    assert r.headers["allow"] == allow


# -- body size --------------------------------------------------------------------------------------------
@pytest.fixture
async def small_client(clean_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """The same database, a 1000-byte body limit (the default 20 MiB is the same code path)."""
    settings = clean_ctx.settings.model_copy(update={"max_body_bytes": 1000})
    app = create_app(ctx=dataclasses.replace(clean_ctx, settings=settings))
    headers = {"Authorization": f"Bearer {admin_token(clean_ctx)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers=headers) as c:
        yield c


TOO_LARGE = outcome("too-costly", "SF-0013: Request body exceeds the limit of 1000 bytes")


async def test_body_too_large_by_content_length(small_client: httpx.AsyncClient) -> None:
    body = b'{"resourceType":"Patient","name":[{"family":"' + b"x" * 1000 + b'"}]}'
    assert_outcome(await small_client.post("/fhir/Patient", content=body, headers=FHIR_JSON), 413, TOO_LARGE)
    # a lying Content-Length is refused before the body is read
    r = await small_client.post("/fhir/Patient", content=b"{}", headers={**FHIR_JSON, "content-length": "1001"})
    assert_outcome(r, 413, TOO_LARGE)


async def test_body_too_large_while_streaming(small_client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"resourceType":"Patient","name":[{"family":"'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}]}'

    r = await small_client.post("/fhir/Patient", content=chunks(), headers=FHIR_JSON)
    assert "content-length" not in r.request.headers
    assert_outcome(r, 413, TOO_LARGE)


async def test_body_at_the_limit_is_accepted(small_client: httpx.AsyncClient) -> None:
    body = b'{"resourceType":"Patient","name":[{"family":"x"}]}'
    body = body[:-4] + b" " * (1000 - len(body)) + body[-4:]
    assert len(body) == 1000
    assert (await small_client.post("/fhir/Patient", content=body, headers=FHIR_JSON)).status_code == 201

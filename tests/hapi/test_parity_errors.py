"""Client-level parity with HAPI FHIR, part 3: error responses (404, 410, 400, 412) and the places where
SafeFlag deliberately answers differently from HAPI: profile and safeguarding rules (422, 409), referential
integrity, unknown elements and search parameters, deletion rules and authentication. Each test runs against
SafeFlag and the HAPI sandbox (tests/hapi/parity.py); docs/hapi-sandbox.md "Differences from HAPI FHIR" gives the reasons.
https://hl7.org/fhir/R4/http.html
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
    unique,
)
from tests.hapi.support import FHIR_JSON, new_nhs_number
from tests.support.fhir_data import unidentified

pytestmark = pytest.mark.hapi


async def _post(http: httpx.AsyncClient, path: str, body: bytes | dict[str, Any]) -> httpx.Response:
    if isinstance(body, bytes):
        return await http.post(path, content=body, headers={"Content-Type": FHIR_JSON})
    return await http.post(path, json=body, headers={"Content-Type": FHIR_JSON})


async def test_not_found_and_gone(target: Server, http: httpx.AsyncClient) -> None:
    missing = await http.get(f"/Patient/{unique('no-such-patient')}")
    assert missing.status_code == 404
    assert is_outcome(missing.json())
    org = await create(http, organization())
    assert (await http.delete(f"/Organization/{org['id']}")).status_code == target.expect(
        hapi=200, safeflag=204
    )
    gone = await http.get(f"/Organization/{org['id']}")
    assert gone.status_code == 410
    assert is_outcome(gone.json())
    # an unknown resource type is a 404 on both (R4 http.html: "resource type not supported")
    assert (await http.get("/Shoe/1")).status_code == 404


@pytest.mark.parametrize(
    ("case", "path", "body"),
    [
        ("not JSON", "/Patient", b'{"resourceType": '),
        ("not an object", "/Patient", b"[]"),
        (
            "code outside a required binding",
            "/Flag",
            {
                "resourceType": "Flag",
                "status": "bogus",
                "code": {"text": "x"},
                "subject": {"display": "a child"},
            },
        ),
        ("resource type not the URL's", "/Patient", {"resourceType": "Organization", "name": "x"}),
    ],
)
async def test_bad_request_is_400(
    target: Server, http: httpx.AsyncClient, case: str, path: str, body: bytes | dict[str, Any]
) -> None:
    response = await _post(http, path, body)
    assert response.status_code == 400, case
    assert is_outcome(response.json())


async def test_id_not_the_urls_is_400(target: Server, http: httpx.AsyncClient) -> None:
    org = await create(http, organization())
    response = await http.put(
        f"/Organization/{org['id']}",
        json={**content(org), "id": "someone-else"},
        headers={"Content-Type": FHIR_JSON},
    )
    assert response.status_code == 400
    assert is_outcome(response.json())


async def test_unknown_element(target: Server, http: httpx.AsyncClient) -> None:
    """SafeFlag rejects an element R4 does not define (contract section 2); HAPI's lenient parser drops it."""
    response = await _post(http, "/Patient", {**patient(new_nhs_number()), "shoeSize": 9})
    assert response.status_code == target.expect(hapi=201, safeflag=400)
    assert response.json() == target.expect(
        hapi={**response.json(), "resourceType": "Patient"},  # stored without it
        safeflag={
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "structure",
                    "diagnostics": "SF-0108: Unknown element 'shoeSize' in Patient",
                    "expression": ["Patient.shoeSize"],
                }
            ],
        },
    )
    assert "shoeSize" not in response.json()


async def test_unknown_search_parameter(target: Server, http: httpx.AsyncClient) -> None:
    """HAPI refuses an unknown parameter (400, HAPI-0524); SafeFlag ignores it and says so in an outcome
    entry (lenient handling, the R4 default), and refuses it only under `Prefer: handling=strict`."""
    lenient = await http.get("/Patient", params={"shoe-size": "9", "_count": "1"})
    assert lenient.status_code == target.expect(hapi=400, safeflag=200)
    if target.name == "safeflag":
        outcome = [unidentified(e)["resource"] for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
        assert outcome == [
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "warning",
                        "code": "not-supported",
                        "expression": ["shoe-size"],
                        "diagnostics": "SF-0400: Unknown search parameter 'shoe-size' for Patient "
                        "was ignored",
                    }
                ],
            }
        ]
    else:
        assert lenient.json()["issue"][0]["diagnostics"].startswith(
            'HAPI-0524: Unknown search parameter "shoe-size" for resource type "Patient"'
        )
    strict = await http.get("/Patient", params={"shoe-size": "9"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert is_outcome(strict.json())


async def test_nhs_number_check_digit(target: Server, http: httpx.AsyncClient) -> None:
    """SafeFlag checks the Modulus 11 check digit on every write (422, issue.expression); HAPI stores it."""
    nhs = new_nhs_number()
    wrong = nhs[:9] + str((int(nhs[9]) + 1) % 10)
    response = await _post(http, "/Patient", patient(wrong))
    assert response.status_code == target.expect(hapi=201, safeflag=422)
    if target.name == "safeflag":
        assert response.json()["issue"][0]["expression"] == ["Patient.identifier[0].value"]


async def test_safeguarding_profile_and_flag_rules(target: Server, http: httpx.AsyncClient) -> None:
    child = await create(http, patient(new_nhs_number()))
    org = await create(http, organization())
    subject, author = f"Patient/{child['id']}", f"Organization/{org['id']}"
    # a Flag without the safeguarding category breaks SafeFlag's profile (422); HAPI does not validate writes
    uncategorised = {k: v for k, v in flag(subject, author).items() if k != "category"}
    assert (await _post(http, "/Flag", uncategorised)).status_code == target.expect(hapi=201, safeflag=422)
    # a second active flag of the same category, subject and author: 409 (contract section 5)
    await create(http, flag(subject, author))
    duplicate = await _post(http, "/Flag", flag(subject, author))
    assert duplicate.status_code == target.expect(hapi=201, safeflag=409)
    # created ended: SafeFlag creates flags active only
    ended = await _post(
        http, "/Flag", {**flag(subject, author, "fgm", "902961000000107"), "status": "inactive"}
    )
    assert ended.status_code == target.expect(hapi=201, safeflag=422)
    # Flags are never deleted in SafeFlag (405); HAPI deletes them
    any_flag = matches((await http.get("/Flag", params={"subject": subject})).json())[0]
    deleted = await http.delete(f"/Flag/{any_flag['id']}")
    assert deleted.status_code == target.expect(hapi=200, safeflag=405)


async def test_referential_integrity(target: Server, http: httpx.AsyncClient) -> None:
    """HAPI refuses a reference to a resource it does not hold (400, HAPI-1094); SafeFlag accepts a literal
    reference it cannot resolve: records arrive from many systems in any order."""
    org = await create(http, organization())
    dangling = flag(f"Patient/{unique('not-yet-sent')}", f"Organization/{org['id']}")
    response = await _post(http, "/Flag", dangling)
    assert response.status_code == target.expect(hapi=400, safeflag=201)
    # By NHS number only, no reference at all: HAPI has nothing to check. SafeFlag resolves a flag's subject
    # (its rules depend on the child's age and other flags): a known NHS number is fine, an unknown one 422.
    known = await create(http, patient(new_nhs_number()))
    for nhs, status in (
        (known["identifier"][0]["value"], 201),
        (new_nhs_number(), target.expect(hapi=201, safeflag=422)),
    ):
        by_nhs = {
            **dangling,
            "subject": {"type": "Patient", "identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs}},
        }
        assert (await _post(http, "/Flag", by_nhs)).status_code == status


async def test_authentication(target: Server) -> None:
    """SafeFlag needs a bearer token everywhere but the CapabilityStatement (401 with WWW-Authenticate);
    the HAPI sandbox, like HAPI's default, is open."""
    async with httpx.AsyncClient(base_url=target.base, timeout=30.0) as anonymous:
        assert (await anonymous.get("/metadata")).status_code == 200
        response = await anonymous.get("/Patient", params={"_count": "1"})
        assert response.status_code == target.expect(hapi=200, safeflag=401)
        if target.name == "safeflag":
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert is_outcome(response.json())

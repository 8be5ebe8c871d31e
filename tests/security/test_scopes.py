"""SMART v2 scopes: parsing, v1 mapping, qualifiers, intersection; and Principal claims."""

from __future__ import annotations

import pytest

from app.security.principal import ClaimError, Principal
from app.security.scopes import ScopeSet, intersect, letter_of, parse_scope

CAT = "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category"
BASE = "http://127.0.0.1:8080/fhir"


def flag(category: str, subject: str = "Patient/c1") -> dict:
    return {"resourceType": "Flag", "id": "f1", "category": [{"coding": [{"system": CAT, "code": category}]}],
            "subject": {"reference": subject}}


@pytest.mark.parametrize("text, expected", [
    ("user/Flag.rs", "user/Flag.rs"),
    ("system/Encounter.c", "system/Encounter.c"),
    ("user/*.cruds", "user/*.cruds"),
    ("patient/Flag.read", "patient/Flag.rs"),
    ("user/Flag.write", "user/Flag.cud"),
    ("user/*.*", "user/*.cruds"),
    (f"user/Flag.rs?category={CAT}|fgm", f"user/Flag.rs?category={CAT}|fgm"),
    ("user/Flag.rs?subject=Patient/1&category=fgm", "user/Flag.rs?subject=Patient/1&category=fgm"),
])
def test_valid_scopes(text: str, expected: str) -> None:
    scope = parse_scope(text)
    assert scope is not None and str(scope) == expected


@pytest.mark.parametrize("text", [
    "openid", "fhirUser", "launch/patient", "offline_access",
    "user/Flag.sr",  # v2 letters must be in c r u d s order
    "user/Flag.rr", "user/Flag.x", "user/Flag.", "admin/Flag.rs", "user/Unknown.rs",
    "user/Flag.rs?date=2020",  # only token and reference qualifiers
    "user/Flag.rs?nonsense=1", "user/*.rs?category=fgm", "user/Flag.rs?category:not=fgm",
    "user/Flag.rs?subject.identifier=x",
])
def test_scopes_that_grant_nothing(text: str) -> None:
    assert parse_scope(text) is None


def test_allows_by_context_type_and_letter() -> None:
    s = ScopeSet.parse("user/Flag.rs system/Encounter.c openid")
    assert s.allows("read", "Flag", context="user")
    assert s.allows("vread", "Flag", context="user") and s.allows("history", "Flag", context="user")
    assert s.allows("search", "Flag", context="user")
    assert not s.allows("create", "Flag", context="user")
    assert not s.allows("read", "Flag", context="system")  # a user/ scope never serves a system principal
    assert s.allows("create", "Encounter", context="system")
    assert not s.allows("update", "Encounter", context="system")
    assert not s.allows("read", "Patient", context="user")
    assert letter_of("patch") == "u" and letter_of("search-type") == "s"


def test_qualified_scope_matches_resources_like_search_does() -> None:
    s = ScopeSet.parse(f"user/Flag.rs?category={CAT}|fgm", base=BASE)
    assert s.allows("read", "Flag", flag("fgm"), context="user")
    assert not s.allows("read", "Flag", flag("child-protection-plan"), context="user")
    assert s.allows("search", "Flag", None, context="user")  # type level: results filtered later
    assert s.search_constraints("Flag", context="user") == [(("category", f"{CAT}|fgm"),)]
    by_code = ScopeSet.parse("user/Flag.rs?category=fgm")
    assert by_code.allows("read", "Flag", flag("fgm"), context="user")
    wrong_system = ScopeSet.parse("user/Flag.rs?category=http://other|fgm")
    assert not wrong_system.allows("read", "Flag", flag("fgm"), context="user")
    by_subject = ScopeSet.parse("user/Flag.rs?subject=Patient/c1", base=BASE)
    assert by_subject.allows("read", "Flag", flag("fgm"), context="user")
    assert by_subject.allows("read", "Flag", flag("fgm", f"{BASE}/Patient/c1"), context="user")
    assert not by_subject.allows("read", "Flag", flag("fgm", "Patient/c2"), context="user")


def test_search_constraints() -> None:
    assert ScopeSet.parse("user/Flag.r").search_constraints("Flag", context="user") is None
    assert ScopeSet.parse("user/Flag.rs user/Flag.s?category=fgm").search_constraints("Flag", context="user") == [()]
    assert ScopeSet.parse("user/Flag.s?category=a user/Flag.s?category=b").search_constraints(
        "Flag", context="user") == [(("category", "a"),), (("category", "b"),)]


@pytest.mark.parametrize("requested, registered, granted", [
    ("system/*.rs", "system/Flag.cruds", "system/Flag.rs"),
    ("system/Flag.cruds", "system/*.rs", "system/Flag.rs"),
    ("system/Encounter.c", "system/Flag.cruds", None),
    ("system/Flag.d", "system/Flag.rs", None),
    ("user/Flag.rs", "system/Flag.rs", None),
    ("system/Flag.rs", "system/Flag.rs?category=fgm", "system/Flag.rs?category=fgm"),
    ("system/Flag.rs?subject=Patient/1", "system/Flag.rs?category=fgm",
     "system/Flag.rs?category=fgm&subject=Patient/1"),
])
def test_intersection(requested: str, registered: str, granted: str | None) -> None:
    req, reg = parse_scope(requested), parse_scope(registered)
    assert req is not None and reg is not None
    both = intersect(req, reg)
    assert (str(both) if both else None) == granted


def test_principal_from_claims() -> None:
    p = Principal.from_claims({
        "iss": "http://127.0.0.1:8080/auth", "sub": "u1", "role": "school-nurse", "scope": "user/Flag.rs",
        "org": "Organization/sn", "fhirUser": f"{BASE}/PractitionerRole/r1", "care_setting": "931821000000105",
        "jti": "t-1",
    }, base=BASE)
    assert (p.sub, p.role, p.org, p.fhir_user, p.care_setting, p.token_id) == (
        "u1", "school-nurse", "Organization/sn", "PractitionerRole/r1", "931821000000105", "t-1")
    assert p.context == "user" and p.org_refs == {"Organization/sn"} and p.own_refs == {"PractitionerRole/r1"}
    assert Principal.from_claims({"sub": "c", "role": "system", "scope": ""}).context == "system"
    again = Principal.from_claims(p.to_claims(), base=BASE)
    assert again.scopes == p.scopes and again.org_refs == p.org_refs and again.own_refs == p.own_refs
    assert (again.sub, again.role, again.org, again.fhir_user, str(again.scopes)) == (
        "u1", "school-nurse", "Organization/sn", "PractitionerRole/r1", "user/Flag.rs")
    assert again.token_id is None  # a stored snapshot is not the token it came from


@pytest.mark.parametrize("claims, message", [
    ({"role": "admin", "scope": ""}, "claim 'sub' is missing"),
    ({"sub": "u", "role": "root", "scope": ""}, "claim 'role' must be one of"),
    ({"sub": "u", "role": "admin"}, "claim 'scope' must be a space-separated string"),
    ({"sub": "u", "role": "admin", "scope": "", "org": "Practitioner/1"}, "claim 'org' must reference one of Organization"),
    ({"sub": "u", "role": "admin", "scope": "", "fhirUser": "Patient/1"},
     "claim 'fhirUser' must reference one of Practitioner, PractitionerRole"),
    ({"sub": "u", "role": "admin", "scope": "", "care_setting": 5}, "claim 'care_setting' must be a non-empty string"),
])
def test_principal_claim_errors(claims: dict, message: str) -> None:
    with pytest.raises(ClaimError) as err:
        Principal.from_claims(claims)
    assert str(err.value).startswith(message)

"""The claim mapping from an identity provider's ID token to a SafeFlag Principal (no database)."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.security.principal import Principal
from app.web.claims import WEB_SCOPE, Unmapped, principal_claims, role_map

BASE = "https://safeflag.example.nhs.uk/fhir"
ISSUER = "https://idp.example.nhs.uk"


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_default_claims_name_the_safeflag_role_organisation_and_practitioner() -> None:
    claims = principal_claims({"sub": "u1", "role": "health-visitor", "org": "Organization/demo-0-19",
                               "fhirUser": "PractitionerRole/demo-hv", "care_setting": "hv", "name": "Hana Visitor",
                               "email": "h@example.nhs.uk"}, _settings(), ISSUER)
    assert claims == {"iss": ISSUER, "sub": "u1", "role": "health-visitor", "scope": WEB_SCOPE,
                      "org": "Organization/demo-0-19", "fhirUser": "PractitionerRole/demo-hv",
                      "care_setting": "hv", "name": "Hana Visitor"}
    principal = Principal.from_claims(claims, base=BASE)
    assert (principal.role, principal.org, principal.fhir_user, principal.care_setting) == (
        "health-visitor", "Organization/demo-0-19", "PractitionerRole/demo-hv", "hv")


def test_a_cis2_style_mapping_from_nested_rbac_codes_and_ods_codes() -> None:
    settings = _settings(web_claim_role="nhsid_nrbac_roles.0.role_code", web_claim_org="nhsid_nrbac_roles.0.org_code",
                         web_claim_practitioner="uid", web_claim_name="name",
                         web_role_map='{"S8000:G8000:R8001": "health-visitor", "S8000:G8000:R8008": "safeguarding-lead"}')
    token = {"sub": "555021935107", "uid": "555021935107", "name": "Sam Lead",
             "nhsid_nrbac_roles": [{"role_code": "S8000:G8000:R8008", "org_code": "RX1"}]}
    claims = principal_claims(token, settings, ISSUER)
    assert (claims["role"], claims["org"], claims["fhirUser"]) == (
        "safeguarding-lead", "Organization/RX1", "Practitioner/555021935107")


def test_the_first_mapped_value_of_a_list_claim_wins() -> None:
    settings = _settings(web_claim_role="groups", web_role_map='{"sg-0-19-hv": "health-visitor"}')
    claims = principal_claims({"sub": "u1", "groups": ["all-staff", "sg-0-19-hv"]}, settings, ISSUER)
    assert claims["role"] == "health-visitor"


@pytest.mark.parametrize("token", [
    {"sub": "u1"},  # no role claim at all
    {"sub": "u1", "role": "nurse"},  # not a SafeFlag role
    {"sub": "u1", "role": "system"},  # a machine role is never granted to a person
    {"sub": "u1", "role": ["admin "]},  # no trimming, no guessing
    {"role": "health-visitor"},  # no subject
])
def test_a_token_without_a_role_for_a_person_is_unmapped(token: dict[str, object]) -> None:
    with pytest.raises(Unmapped, match="no SafeFlag role for this account"):
        principal_claims(token, _settings(), ISSUER)


def test_with_a_map_only_mapped_values_count() -> None:
    settings = _settings(web_role_map='{"R8001": "health-visitor"}')
    with pytest.raises(Unmapped):
        principal_claims({"sub": "u1", "role": "health-visitor"}, settings, ISSUER)


@pytest.mark.parametrize(("value", "message"), [
    ("[1]", "must be a JSON object of strings"),
    ("{", "is not JSON"),
    ('{"R1": "system"}', "maps to system: not roles a person may hold"),
])
def test_a_wrong_role_map_is_a_clear_configuration_error(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        role_map(_settings(web_role_map=value))

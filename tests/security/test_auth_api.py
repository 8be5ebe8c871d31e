"""The `authenticate` dependency over HTTP, the JWKS and the SMART configuration, on both databases."""

from __future__ import annotations

import time

import httpx
import jwt

from app.security.tokens import TokenIssuer
from tests.conftest import BASE_URL, FHIR
from tests.security.tokens_fixture import Auth, Mint

LOGIN_401 = {
    "resourceType": "OperationOutcome",
    "issue": [{
        "severity": "error",
        "code": "login",
        "diagnostics": "SF-0810: Authentication required: send 'Authorization: Bearer <token>'",
    }],
}


def invalid(description: str) -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": f"SF-0811: Invalid bearer token: {description}"}],
    }


async def test_no_token_is_401_with_realm_and_no_error(sec_client: httpx.AsyncClient) -> None:
    r = await sec_client.get("/fhir/Protected")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="safeflag"'
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert r.json() == LOGIN_401


async def test_other_scheme_counts_as_no_token(sec_client: httpx.AsyncClient) -> None:
    r = await sec_client.get("/fhir/Protected", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="safeflag"'
    assert r.json() == LOGIN_401


async def test_garbage_token_is_invalid_token(sec_client: httpx.AsyncClient) -> None:
    r = await sec_client.get("/fhir/Protected", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        'Bearer realm="safeflag", error="invalid_token", error_description="the token is not a well-formed JWT"'
    )
    assert r.json() == invalid("the token is not a well-formed JWT")


async def test_expired_token_is_refused(sec_client: httpx.AsyncClient, issuer: TokenIssuer) -> None:
    past = TokenIssuer(issuer.issuer, issuer.audience, issuer.key, now=lambda: time.time() - 3600)
    token = past.mint(sub="x", role="admin", scope="user/*.cruds", ttl=60)
    r = await sec_client.get("/fhir/Protected", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        'Bearer realm="safeflag", error="invalid_token", error_description="the token has expired"'
    )
    assert r.json() == invalid("the token has expired")


async def test_valid_token_gives_the_principal(sec_client: httpx.AsyncClient, auth: Auth) -> None:
    headers = auth("health-visitor", sub="hv-1", org="Organization/zero19", practitioner="Practitioner/p-1",
                   care_setting="1078501000000104", scope="user/Flag.rs user/Communication.rs")
    r = await sec_client.get("/fhir/Protected", headers=headers)
    assert r.status_code == 200
    assert r.json() == {
        "sub": "hv-1", "role": "health-visitor", "org": "Organization/zero19", "fhirUser": "Practitioner/p-1",
        "care_setting": "1078501000000104", "client_id": None, "scope": "user/Flag.rs user/Communication.rs",
        "issuer": f"{BASE_URL}/auth",
    }


async def test_token_with_unknown_role_is_refused(sec_client: httpx.AsyncClient, issuer: TokenIssuer) -> None:
    token = issuer.mint(sub="x", role="superuser", scope="user/*.cruds")
    r = await sec_client.get("/fhir/Protected", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json()["issue"][0]["diagnostics"].startswith("SF-0811: Invalid bearer token: claim 'role' must be one of ")


async def test_jwks_serves_the_local_public_key(sec_client: httpx.AsyncClient, mint: Mint) -> None:
    r = await sec_client.get("/auth/jwks")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert set(key) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    token = mint("admin")
    assert jwt.get_unverified_header(token)["kid"] == key["kid"]
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256"], audience=FHIR)
    assert claims["role"] == "admin"


async def test_smart_configuration(sec_client: httpx.AsyncClient) -> None:
    r = await sec_client.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    body = r.json()
    assert body["token_endpoint"] == f"{BASE_URL}/auth/token"
    assert body["jwks_uri"] == f"{BASE_URL}/auth/jwks"
    assert body["issuer"] == f"{BASE_URL}/auth"
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert body["grant_types_supported"] == ["client_credentials"]
    assert body["capabilities"] == ["client-confidential-asymmetric", "permission-v2"]
    assert "system/*.cruds" in body["scopes_supported"] and "system/Encounter.cruds" in body["scopes_supported"]

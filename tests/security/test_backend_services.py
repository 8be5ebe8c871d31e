"""SMART Backend Services end to end with real key pairs, on both databases: register a client, sign
an assertion, get an access token, use it; and every way a token request is refused."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.context import AppContext
from app.security.backend import ASSERTION_TYPE, granted_scope
from app.security.clients import ClientRegistration, put_client, validate_client_scope, validate_jwks
from app.security.keys import SigningKey
from tests.conftest import BASE_URL

TOKEN_URL = f"{BASE_URL}/auth/token"
CLIENT = "ed-epr"
EC_KEY = SigningKey.from_private(ec.generate_private_key(ec.SECP384R1()))
RSA_KEY = SigningKey.from_private(rsa.generate_private_key(public_exponent=65537, key_size=2048))


async def register(ctx: AppContext, scope: str = "system/Encounter.cru system/Flag.rs", *,
                   active: bool = True) -> None:
    jwks = validate_jwks({"keys": [EC_KEY.jwk(), RSA_KEY.jwk()]})
    async with ctx.sessionmaker() as session, session.begin():
        await put_client(session, ClientRegistration(CLIENT, jwks, scope, "Organization/ed", active), datetime(2026, 1, 1))


def assertion(*, key: SigningKey = EC_KEY, alg: str = "ES384", headers: dict[str, Any] | None = None,
              **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": now + 240, "jti": str(uuid.uuid4()), **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key.private_key, algorithm=alg, headers={"kid": key.kid, "typ": "JWT", **(headers or {})})


def form(client_assertion: str, scope: str = "system/Encounter.c system/Patient.r", **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion, "scope": scope, **extra}


async def test_end_to_end(clean_ctx: AppContext, sec_client: httpx.AsyncClient) -> None:
    await register(clean_ctx)
    signed = assertion()
    r = await sec_client.post("/auth/token", data=form(signed))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 300, "system/Encounter.c")
    me = await sec_client.get("/fhir/Protected", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {"sub": CLIENT, "role": "system", "org": "Organization/ed", "fhirUser": None,
                         "care_setting": None, "client_id": CLIENT, "scope": "system/Encounter.c",
                         "issuer": f"{BASE_URL}/auth"}
    # the same assertion again is a replay
    again = await sec_client.post("/auth/token", data=form(signed))
    assert (again.status_code, again.json()) == (401, {"error": "invalid_client",
                                                       "error_description": "client_assertion jti was already used"})
    # RS384 works as well
    rs = await sec_client.post("/auth/token", data=form(assertion(key=RSA_KEY, alg="RS384"), "system/*.rs"))
    assert (rs.status_code, rs.json()["scope"]) == (200, "system/Encounter.r system/Flag.rs")  # cru ∩ rs = r


def _refusals() -> list[Any]:
    # times are taken when the case runs, not when the module is collected (minutes earlier in a long run)
    cases: list[tuple[str, Any, int, str, str]] = [
        ("wrong grant", {"grant_type": "password"}, 400, "unsupported_grant_type",
         "only grant_type=client_credentials is supported"),
        ("wrong assertion type", {"client_assertion_type": "urn:other"}, 400, "invalid_request",
         f"client_assertion_type must be {ASSERTION_TYPE}"),
        ("no assertion", {"client_assertion": ""}, 400, "invalid_request", "parameter 'client_assertion' is required"),
        ("no scope", {"scope": ""}, 400, "invalid_request", "parameter 'scope' is required"),
        ("ES256 not accepted", lambda: assertion(key=SigningKey.from_private(ec.generate_private_key(ec.SECP256R1())),
                                                 alg="ES256"), 401, "invalid_client",
         "client_assertion must be signed RS384 or ES384, not ES256"),
        ("RS256 not accepted", lambda: assertion(key=RSA_KEY, alg="RS256"), 401, "invalid_client",
         "client_assertion must be signed RS384 or ES384, not RS256"),
        ("unknown client", lambda: assertion(iss="nobody", sub="nobody"), 401, "invalid_client", "unknown client"),
        ("sub differs", lambda: assertion(sub="someone"), 401, "invalid_client",
         "client_assertion sub must be the client_id"),
        ("wrong audience", lambda: assertion(aud=f"{BASE_URL}/fhir"), 401, "invalid_client",
         f"client_assertion aud must be the token endpoint {TOKEN_URL}"),
        ("expired", lambda: assertion(exp=int(time.time()) - 61), 401, "invalid_client", "client_assertion has expired"),
        ("exp too far", lambda: assertion(exp=int(time.time()) + 600), 401, "invalid_client",
         "client_assertion exp is more than five minutes in the future"),
        ("no jti", lambda: assertion(jti=None), 401, "invalid_client", "client_assertion has no 'jti' claim"),
        ("unknown kid", lambda: assertion(headers={"kid": "nope"}), 401, "invalid_client",
         "client_assertion kid is not one of the client's registered keys"),
        ("key of another client", lambda: assertion(
            key=SigningKey(ec.generate_private_key(ec.SECP384R1()), "ES384", EC_KEY.kid)), 401, "invalid_client",
         "client_assertion signature does not verify"),
        ("access token as assertion", lambda: assertion(headers={"typ": "at+jwt"}), 401, "invalid_client",
         "client_assertion must have typ JWT"),
        ("client_id mismatch", {"client_id": "other"}, 401, "invalid_client",
         "client_id does not match the client_assertion issuer"),
        ("nothing registered", {"scope": "system/Patient.r user/Flag.rs"}, 400, "invalid_scope",
         "none of the requested scopes is registered for this client"),
    ]
    return [pytest.param(change, status, error, text, id=name) for name, change, status, error, text in cases]


@pytest.mark.parametrize("change, status, error, description", _refusals())
async def test_refusals(clean_ctx: AppContext, sec_client: httpx.AsyncClient, change: Any, status: int,
                        error: str, description: str) -> None:
    await register(clean_ctx)
    data = form(change()) if callable(change) else {**form(assertion()), **change}
    r = await sec_client.post("/auth/token", data=data)
    assert (r.status_code, r.json()) == (status, {"error": error, "error_description": description})
    assert r.headers["cache-control"] == "no-store"


async def test_inactive_client_and_bad_body(clean_ctx: AppContext, sec_client: httpx.AsyncClient) -> None:
    await register(clean_ctx, active=False)
    r = await sec_client.post("/auth/token", data=form(assertion()))
    assert (r.status_code, r.json()["error_description"]) == (401, "unknown client")
    r = await sec_client.post("/auth/token", json=form(assertion()))
    assert (r.status_code, r.json()) == (400, {"error": "invalid_request", "error_description":
                                               "send the request as application/x-www-form-urlencoded"})
    dup = "grant_type=client_credentials&grant_type=client_credentials"
    r = await sec_client.post("/auth/token", content=dup,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()["error_description"]) == (400, "parameter 'grant_type' was sent more than once")
    big = "scope=" + "a" * 70_000
    r = await sec_client.post("/auth/token", content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()["error_description"]) == (400, "the form body is malformed or too large")


def test_granted_scope() -> None:
    assert granted_scope("system/*.cruds openid user/Flag.rs", "system/Encounter.c system/Flag.rs") == (
        "system/Encounter.c system/Flag.rs")
    assert granted_scope("system/Flag.c", "system/Flag.rs") == ""


def test_registration_validation() -> None:
    with pytest.raises(ValueError, match="holds private key material"):
        validate_jwks({"keys": [{**EC_KEY.jwk(), "d": "secret"}]})
    with pytest.raises(ValueError, match="has no 'kid'"):
        validate_jwks({"keys": [{k: v for k, v in EC_KEY.jwk().items() if k != "kid"}]})
    p256 = SigningKey.from_private(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ValueError, match="neither an RSA nor an EC P-384 key"):
        validate_jwks(p256.jwk())
    assert validate_jwks(EC_KEY.jwk())["keys"][0]["kid"] == EC_KEY.kid
    with pytest.raises(ValueError, match="not a SMART v2 system/ resource scope"):
        validate_client_scope("user/Flag.rs")
    assert validate_client_scope("  system/Flag.rs   system/Encounter.c ") == "system/Flag.rs system/Encounter.c"

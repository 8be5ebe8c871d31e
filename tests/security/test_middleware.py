"""Security headers, closed CORS and per-client rate limiting, over real ASGI requests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from app.config import Settings
from app.errors import NotAuthenticated
from app.security.middleware import RateLimitMiddleware, SecurityHeadersMiddleware, TokenBuckets, client_key
from app.security.runtime import SecurityRuntime
from app.security.tokens import MAX_SKEW

EPR = "https://epr.example.nhs.uk"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def security(tmp_path: Path) -> SecurityRuntime:
    """A real issuer key and verifier: the rate limit keys a client by what verifies."""
    return SecurityRuntime.from_settings(Settings(data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]


def bearer(security: SecurityRuntime, sub: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {security.issuer.mint(sub=sub, role='system', scope='system/*.rs', **claims)}"}


def make_app(clock: Clock, *, rate: float = 1.0, burst: int = 2, security: SecurityRuntime | None = None) -> FastAPI:
    app = FastAPI()

    @app.get("/fhir/Patient/1")
    async def read() -> Response:
        return JSONResponse({"resourceType": "Patient"})

    @app.get("/fhir/metadata")
    async def metadata() -> Response:
        return JSONResponse({}, headers={"Cache-Control": "public, max-age=60"})

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    app.add_middleware(RateLimitMiddleware, rate=rate, burst=burst, now=clock,
                       identify=security.identify if security else None)
    app.add_middleware(SecurityHeadersMiddleware, cors_origins=[EPR])
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080")


def fake_token(**claims: str) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFUzI1NiJ9.{body}.c2ln"


async def test_security_headers_on_every_response() -> None:
    async with client(make_app(Clock(), rate=0)) as c:
        r = await c.get("/fhir/Patient/1")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert r.headers["cache-control"] == "no-store"
        assert "access-control-allow-origin" not in r.headers
        kept = await c.get("/fhir/metadata")
        assert kept.headers["cache-control"] == "public, max-age=60"
        missing = await c.get("/fhir/nothing-here")
        assert missing.status_code == 404 and missing.headers["x-frame-options"] == "DENY"


async def test_cors_closed_except_for_listed_origins() -> None:
    async with client(make_app(Clock(), rate=0)) as c:
        pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        r = await c.options("/fhir/Patient/1", headers=pre)
        assert r.status_code == 403
        assert "access-control-allow-origin" not in r.headers
        assert r.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "forbidden",
            "diagnostics": "SF-0831: Cross-origin requests from https://evil.example are not allowed"}]}
        plain = await c.get("/fhir/Patient/1", headers={"Origin": "https://evil.example"})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
        ok = await c.options("/fhir/Patient/1", headers={**pre, "Origin": EPR})
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == EPR
        assert "Authorization" in ok.headers["access-control-allow-headers"]
        got = await c.get("/fhir/Patient/1", headers={"Origin": EPR})
        assert got.headers["access-control-allow-origin"] == EPR and got.headers["vary"] == "Origin"
        exposed = got.headers["access-control-expose-headers"].split(", ")
        assert "ETag" in exposed and "X-SafeFlag-Unrouted" in exposed  # a browser ED client reads it too


async def test_rate_limit_per_client_with_retry_after(security: SecurityRuntime) -> None:
    clock = Clock()
    alice, bob = bearer(security, "alice"), bearer(security, "bob")
    async with client(make_app(clock, rate=0.5, burst=2, security=security)) as c:
        assert [(await c.get("/fhir/Patient/1", headers=alice)).status_code for _ in range(2)] == [200, 200]
        r = await c.get("/fhir/Patient/1", headers=alice)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"
        assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.json() == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "throttled",
            "diagnostics": "SF-0830: Too many requests from this client; retry after 2 s"}]}
        assert (await c.get("/fhir/Patient/1", headers=bob)).status_code == 200  # a bucket of its own
        assert (await c.get("/healthz", headers=alice)).status_code == 200  # probes are never limited
        clock.t += 2.0
        assert (await c.get("/fhir/Patient/1", headers=alice)).status_code == 200
        # without a token the peer address is the client
        assert [(await c.get("/fhir/Patient/1")).status_code for _ in range(3)] == [200, 200, 429]


def test_token_buckets_refill_and_forget() -> None:
    clock = Clock()
    buckets = TokenBuckets(10.0, 3, now=clock, max_keys=2)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert abs(buckets.take("a") - 0.1) < 1e-9
    clock.t += 0.1
    assert buckets.take("a") == 0.0
    buckets.take("b")
    buckets.take("c")  # "a" is the least recently used and is forgotten: a full bucket again
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]


async def test_client_key_is_the_verified_identity_else_the_peer_address(security: SecurityRuntime) -> None:
    def scope(auth: str | None) -> dict:
        headers = [(b"authorization", auth.encode())] if auth else []
        return {"type": "http", "headers": headers, "client": ("10.1.2.3", 5000)}

    iss = security.issuer.issuer
    real = bearer(security, "s", client_id="c")["Authorization"]
    assert await client_key(scope(None), security.identify) == "ip:10.1.2.3"
    assert await client_key(scope(real), security.identify) == f"token:{iss}|c"
    assert await client_key(scope(bearer(security, "s")["Authorization"]), security.identify) == f"token:{iss}|s"
    # claims that did not verify never name the bucket: unsigned, re-signed, tampered, not a JWT
    assert await client_key(scope(f"Bearer {fake_token(iss=iss, sub='s')}"), security.identify) == "ip:10.1.2.3"
    head, body, sig = real.removeprefix("Bearer ").split(".")
    assert await client_key(scope(f"Bearer {head}.{body}.{sig[::-1]}"), security.identify) == "ip:10.1.2.3"
    assert await client_key(scope("Bearer not-a-jwt"), security.identify) == "ip:10.1.2.3"
    assert await client_key(scope("Bearer a.!!!.c"), security.identify) == "ip:10.1.2.3"
    assert await client_key(scope(real), None) == "ip:10.1.2.3"  # no verifier: the address only


async def test_a_token_s_principal_is_made_once_and_served_only_while_the_token_verifies(tmp_path: Path) -> None:
    clock = [1_800_000_000.0]
    runtime = SecurityRuntime.from_settings(Settings(data_dir=tmp_path, _env_file=None),  # type: ignore[call-arg]
                                            now=lambda: clock[0])
    token = runtime.issuer.mint(sub="hv-1", role="health-visitor", scope="user/Flag.rs", org="Organization/o1", ttl=60)
    first = await runtime.authenticate(f"Bearer {token}")
    assert (first.sub, first.role, first.org, first.scopes.raw) == ("hv-1", "health-visitor", "Organization/o1",
                                                                     "user/Flag.rs")
    assert await runtime.authenticate(f"Bearer {token}") is first  # the same token: the same Principal
    # another token of the same user with another role is its own Principal
    lead = runtime.issuer.mint(sub="hv-1", role="safeguarding-lead", scope="user/*.rs", org="Organization/o1", ttl=60)
    assert (await runtime.authenticate(f"Bearer {lead}")).role == "safeguarding-lead"
    clock[0] += 60 + MAX_SKEW + 1  # expired: refused although its Principal was kept
    with pytest.raises(NotAuthenticated) as err:
        await runtime.authenticate(f"Bearer {token}")
    assert err.value.issues[0].msg_id == "SF-0811"
    assert err.value.issues[0].diagnostics == "Invalid bearer token: the token has expired"

"""The rate limit in the running app keys a client by its VERIFIED identity: tokens that do not verify
(unsigned, re-signed, tampered) count against the sender's address, so they cannot drain the bucket of
the client they name. On both databases, through the app's own middleware stack."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from app.context import AppContext
from app.main import create_app
from tests.conftest import BASE_URL
from tests.security.tokens_fixture import Mint

BURST = 5


@pytest.fixture
async def limited(clean_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a small bucket that does not refill within a test (0.001 tokens a second)."""
    settings = clean_ctx.settings.model_copy(update={"rate_limit_per_second": 0.001, "rate_limit_burst": BURST})
    app = create_app(settings, ctx=clean_ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        yield c


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


def forgeries(real: str) -> list[str]:
    """Tokens claiming the real token's identity that do not verify."""
    head, body, sig = real.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{body}."
    tampered = f"{head}.{_b64({**claims, 'role': 'admin'})}.{sig}"
    bad_signature = f"{head}.{body}.{sig[:-4]}AAAA"
    return [unsigned, tampered, bad_signature]


async def test_forged_tokens_naming_a_client_do_not_drain_its_bucket(limited: httpx.AsyncClient, mint: Mint) -> None:
    victim = mint("system", sub="victim-epr", org="Organization/epr", scope="system/Flag.rs")
    attacks = [forgeries(victim)[i % 3] for i in range(4 * BURST)]
    statuses = [(await limited.get("/fhir/metadata", headers={"Authorization": f"Bearer {t}"})).status_code
                for t in attacks]
    # the forgeries share their sender's address bucket: a burst's worth answered, then throttled
    assert statuses == [200] * BURST + [429] * (3 * BURST)
    throttled = await limited.get("/fhir/metadata", headers={"Authorization": f"Bearer {attacks[0]}"})
    assert throttled.json() == {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "throttled",
        "diagnostics": f"SF-0830: Too many requests from this client; retry after {throttled.headers['retry-after']} s",
    }]}
    # the real victim-epr still has its whole bucket, on metadata and on a search
    real = {"Authorization": f"Bearer {victim}"}
    got = [(await limited.get("/fhir/metadata", headers=real)).status_code for _ in range(BURST - 1)]
    search = await limited.get("/fhir/Flag?status=active", headers=real)
    assert (got, search.status_code) == ([200] * (BURST - 1), 200)
    assert search.json()["resourceType"] == "Bundle"
    # ...and only then is it throttled, in a bucket of its own
    assert (await limited.get("/fhir/metadata", headers=real)).status_code == 429
    # a request without a token from the attacker's address is in the address bucket, spent already
    assert (await limited.get("/fhir/metadata")).status_code == 429

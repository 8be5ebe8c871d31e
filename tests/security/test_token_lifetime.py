"""Token lifetime is capped at 24 hours (app/security/tokens.py MAX_LIFETIME): the verifier refuses a
longer-lived token from any issuer (401 with the reason), the local issuer and `safeflag token` will
not mint one. Fixed instants only."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.context import AppContext
from app.security.tokens import MAX_LIFETIME, MAX_SKEW, TokenIssuer
from tests.security.test_tokens import AUD, BASE_CLAIMS, ISS, LOCAL, NOW, refused, sign, verifier
from tests.security.tokens_fixture import issuer_for

TOO_LONG = "the token's lifetime (exp) is longer than the 24 hours accepted here"
DAY, YEAR = 24 * 3600, 365 * 24 * 3600


@pytest.mark.parametrize(("claims", "ok"), [
    ({"exp": NOW + DAY}, True),  # no iat: measured from now
    ({"exp": NOW + DAY + MAX_SKEW}, True),
    ({"exp": NOW + DAY + MAX_SKEW + 1}, False),
    ({"iat": NOW, "exp": NOW + DAY + MAX_SKEW}, True),
    ({"iat": NOW - DAY, "exp": NOW + 3600}, False),  # 25 hours from issue, though only one is left
    ({"iat": NOW, "exp": NOW + 300 * YEAR}, False),  # centuries away
    ({"iat": NOW + 300 * YEAR - 60, "exp": NOW + 300 * YEAR}, False),  # a future iat does not help
    ({"iat": "yesterday", "exp": NOW + DAY + MAX_SKEW + 1}, False),  # an unusable iat counts as now
])
async def test_lifetime_cap(claims: dict[str, Any], ok: bool) -> None:
    token = sign({**BASE_CLAIMS, **claims})
    if ok:
        assert (await verifier().verify(token))["sub"] == "u1"
    else:
        await refused(token, TOO_LONG)


def test_issuer_and_cli_mint_no_longer() -> None:
    issuer = TokenIssuer(ISS, AUD, LOCAL, now=lambda: NOW)
    claims = jwt.decode(issuer.mint(sub="x", role="admin", scope="user/*.cruds", ttl=MAX_LIFETIME),
                        options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == MAX_LIFETIME
    with pytest.raises(ValueError, match="a token's lifetime is 1 to 86400 seconds, not 86401"):
        issuer.mint(sub="x", role="admin", scope="user/*.cruds", ttl=MAX_LIFETIME + 1)
    result = CliRunner().invoke(app, ["token", "--sub", "x", "--role", "admin", "--ttl", str(MAX_LIFETIME + 1)])
    assert result.exit_code == 2 and result.stdout == ""


async def test_api_refuses_a_token_good_for_centuries(client: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    key = issuer_for(clean_ctx).key
    now = int(time.time())  # the server verifies against real time; the offsets decide the outcome

    def bearer(lifetime: int) -> dict[str, str]:
        token = jwt.encode({"iss": f"{clean_ctx.settings.base_url}/auth", "sub": "old", "aud": clean_ctx.settings.fhir_base,
                            "iat": now, "exp": now + lifetime, "role": "admin", "scope": "user/*.cruds"},
                           key.private_key, algorithm=key.alg, headers={"kid": key.kid})
        return {"Authorization": f"Bearer {token}"}

    r = await client.get("/fhir/Patient", headers=bearer(300 * YEAR))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="safeflag", error="invalid_token", error_description="{TOO_LONG}"')
    assert r.json() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "login", "diagnostics": f"SF-0811: Invalid bearer token: {TOO_LONG}"}]}
    assert (await client.get("/fhir/Patient", headers=bearer(DAY))).status_code == 200

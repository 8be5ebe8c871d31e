"""Fixtures that mint bearer tokens for tests, signed by the SAME local issuer key the app under test
verifies with (the key in `ctx.settings.data_dir`). Meant to move into tests/conftest.py once every
route requires a token:

    from tests.security.tokens_fixture import issuer, mint, auth  # noqa: F401  (pytest fixtures)

    async def test_read(client, auth):
        r = await client.get("/fhir/Flag/1", headers=auth("ed-clinician", org="Organization/ed"))

`auth(role, **claims)` returns {"Authorization": "Bearer ..."}; `mint(role, **claims)` the token.
Defaults: sub "test-<role>", scope everything the role allows (`user/*.cruds`, or `system/*.cruds`
for role system), one hour. Keyword arguments: org, practitioner (fhirUser), care_setting, scope, ttl,
sub, client_id.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.context import AppContext
from app.security.keys import load_or_create_issuer_key
from app.security.runtime import local_issuer
from app.security.tokens import TokenIssuer, default_scope

Mint = Callable[..., str]
Auth = Callable[..., dict[str, str]]


def issuer_for(ctx: AppContext) -> TokenIssuer:
    settings = ctx.settings
    return TokenIssuer(local_issuer(settings), settings.fhir_base, load_or_create_issuer_key(settings.data_dir))


@pytest.fixture
def issuer(ctx: AppContext) -> TokenIssuer:
    return issuer_for(ctx)


@pytest.fixture
def mint(issuer: TokenIssuer) -> Mint:
    def _mint(
        role: str, *, sub: str | None = None, org: str | None = None, practitioner: str | None = None,
        care_setting: str | None = None, scope: str | None = None, ttl: int = 3600, client_id: str | None = None,
    ) -> str:
        return issuer.mint(sub=sub or f"test-{role}", role=role, scope=scope or default_scope(role), ttl=ttl,
                           org=org, fhir_user=practitioner, care_setting=care_setting, client_id=client_id)

    return _mint


@pytest.fixture
def auth(mint: Mint) -> Auth:
    def _auth(role: str, **claims: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(role, **claims)}"}

    return _auth

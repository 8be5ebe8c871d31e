"""Fixtures of the safeguarding tests: `client` is tests/conftest.py's (both databases, admin token) on
an app that also serves the conformance and `$safeguarding-summary` routes (first, as app/main.py
must include them), whether or not app/main.py includes them yet."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.context import AppContext
from app.main import create_app
from tests.conftest import BASE_URL, admin_token


def with_safeguarding_routes(app: FastAPI) -> FastAPI:
    from app.api import conformance, safeguarding

    names = {getattr(r, "name", None) for r in app.router.routes}
    for router in (conformance.router, safeguarding.router):
        if all(getattr(r, "name", None) in names for r in router.routes):
            continue
        before = len(app.router.routes)
        app.include_router(router)
        added = app.router.routes[before:]
        del app.router.routes[before:]
        app.router.routes[0:0] = added
    return app


@pytest.fixture
async def client(clean_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    app = with_safeguarding_routes(create_app(ctx=clean_ctx))
    headers = {"Authorization": f"Bearer {admin_token(clean_ctx)}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers=headers) as c:
        yield c

"""Security test fixtures: token minting (tokens_fixture.py) and a small app that mounts the auth
router plus a protected route, so that the `authenticate` dependency is tested end to end over HTTP
on both databases before the lead wires it into every FHIR route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from app.api import auth as auth_api
from app.api.responses import fhir_response
from app.context import AppContext
from app.errors import FhirError
from tests.conftest import BASE_URL
from tests.security.tokens_fixture import auth, issuer, mint  # noqa: F401  (fixtures)


def security_app(ctx: AppContext, **state: Any) -> FastAPI:
    app = FastAPI()
    app.state.ctx = ctx
    for key, value in state.items():
        setattr(app.state, key, value)
    app.include_router(auth_api.router)
    # in the app, the FHIR router serves SMART discovery (app/api/fhir_routes.py); here, a plain route
    app.add_api_route("/fhir/.well-known/smart-configuration", auth_api.smart_configuration)

    @app.get("/fhir/Protected")
    async def protected(principal: auth_api.PrincipalDep) -> Response:
        return fhir_response({
            "sub": principal.sub, "role": principal.role, "org": principal.org, "fhirUser": principal.fhir_user,
            "care_setting": principal.care_setting, "client_id": principal.client_id,
            "scope": str(principal.scopes), "issuer": principal.issuer,
        })

    @app.exception_handler(FhirError)
    async def fhir_error(_request: Request, exc: FhirError) -> Response:
        return fhir_response(exc.outcome(), exc.status, exc.headers or None)

    return app


@pytest.fixture
async def sec_client(clean_ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    app = security_app(clean_ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        yield c

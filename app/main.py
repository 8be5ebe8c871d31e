"""create_app(): routers, exception handlers, lifespan (engine; later the dispatcher)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.api import interactions, operations, system
from app.api.responses import fhir_response
from app.config import Settings, get_settings
from app.context import AppContext
from app.errors import FhirError, Issue, operation_outcome
from app.observability import Metrics, RequestMiddleware, configure_logging

log = logging.getLogger("safeflag")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 415: "not-supported"}


def create_app(settings: Settings | None = None, ctx: AppContext | None = None) -> FastAPI:
    settings = settings or (ctx.settings if ctx else get_settings())
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = ctx is None
        app.state.ctx = ctx or AppContext.from_settings(settings)
        try:
            yield
        finally:
            if own:
                await app.state.ctx.close()

    app = FastAPI(
        title="SafeFlag FHIR R4 API",
        version="0.1.0",
        description="FHIR R4 (4.0.1) safeguarding service: flags, referral copies and ED attendance notices.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.started = datetime.now(timezone.utc)
    app.state.metrics = Metrics()
    if ctx is not None:
        app.state.ctx = ctx
    app.include_router(system.router)
    app.include_router(operations.router)
    app.include_router(interactions.router)
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics)
    _install_handlers(app)
    return app


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(_request: Request, exc: FhirError) -> Response:
        return fhir_response(exc.outcome(), exc.status, exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        issues = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("path", "query", "header", "body"))
            issues.append(Issue("invalid", f"Invalid {loc or 'request'}: {err.get('msg')}",
                                expression=(loc,) if loc else (), msg_id="SF-0014"))
        return fhir_response(operation_outcome(issues or [Issue("invalid", "Invalid request", msg_id="SF-0014")]), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "processing")
        text = "No such endpoint" if exc.status_code == 404 else str(exc.detail)
        body = operation_outcome([Issue(code, text, msg_id=f"SF-H{exc.status_code}")])
        return fhir_response(body, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        body = operation_outcome(
            [Issue("exception", "Internal server error; quote the X-Request-Id when reporting it", msg_id="SF-0500")]
        )
        return fhir_response(body, 500)

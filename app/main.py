"""create_app(): the FHIR router and FastAPI's other routes, exception handlers, lifespan (engine,
in-process notification dispatcher)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from app import openapi, web
from app.api import auth, subscriptions, system
from app.api.compression import GzipResponses
from app.api.deps import Context
from app.api.fhir_routes import fhir_routes
from app.api.responses import fhir_response, no_endpoint_response
from app.api.router import FhirRoute
from app.config import Settings, get_settings
from app.context import AppContext
from app.errors import BadRequest, FhirError, Issue, operation_outcome
from app.heap import HeapKeeper
from app.notify.channels.websocket import WebSocketRegistry
from app.observability import Metrics, RequestMiddleware, configure_logging
from app.resource_rules import resource_rules
from app.security import redact
from app.security.middleware import (
    CancelOnDisconnectMiddleware,
    RateLimitMiddleware,
    SecurityHeadersMiddleware,
    UrlLengthMiddleware,
)
from app.security.runtime import SecurityRuntime
from app.storage.failures import as_fhir_error

log = logging.getLogger("safeflag")

_HTTP_CODES = {406: "not-supported", 415: "not-supported"}


def create_app(settings: Settings | None = None, ctx: AppContext | None = None) -> FastAPI:
    settings = settings or (ctx.settings if ctx else get_settings())
    configure_logging(settings.log_level)
    redact.install()  # bearer tokens and secrets never reach the logs
    # refuses to start (InsecureKeyError) with a default, weak or group/world-readable issuer key
    security = SecurityRuntime.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = ctx is None
        # what the routes see of it; the resource-type rules every write runs: app/resource_rules.py
        context: Context = ctx or AppContext.from_settings(settings, interceptors=resource_rules())
        app.state.ctx = context
        if app.state.started is None:
            app.state.started = context.clock.now()  # the CapabilityStatement's date: when the server started
        stop = asyncio.Event()
        task = None
        if settings.dispatcher_in_process and os.environ.get("SAFEFLAG_NO_DISPATCHER") != "1":
            from app.worker import make_dispatcher

            dispatcher = make_dispatcher(app.state.ctx, ws=app.state.ws_registry, metrics=app.state.metrics)
            task = asyncio.create_task(dispatcher.run(stop), name="safeflag-dispatcher")
        keeper = None
        if settings.gc_freeze:  # short full garbage collections once what lives long is known (app/heap.py)
            freezes = app.state.metrics.heap_freezes
            keeper = asyncio.create_task(HeapKeeper(on_freeze=lambda _f: freezes.inc()).run(stop), name="safeflag-heap")
        scrape = None
        if settings.metrics_bind:
            from app import metrics_listener
            from app.api.system import render_metrics

            scrape = await metrics_listener.start(settings.metrics_bind, lambda: render_metrics(app))
        try:
            yield
        finally:
            if scrape is not None:
                scrape.close()
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            if keeper is not None:
                await keeper
            await security.aclose()
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
    app.state.metrics = Metrics()
    app.state.ws_registry = WebSocketRegistry(now=lambda: app.state.ctx.clock.now())
    app.state.security = security
    app.state.started = None  # set when it starts serving (lifespan), or at the first /metadata (`system.capabilities`)
    if ctx is not None:
        app.state.ctx = ctx
    # every HTTP request under /fhir: one dispatch table (app/api/fhir_routes.py), first in line
    app.state.fhir_table = fhir_routes()
    app.router.routes.insert(0, FhirRoute(app.state.fhir_table))
    for router in (auth.router, system.router, subscriptions.ws_router):  # /auth, /healthz, /readyz, /metrics, /fhir/ws
        app.include_router(router)
    web.install(app)  # the web app at /app (app/web)
    app.add_middleware(GzipResponses)  # innermost: the log line and metrics see the request as the client sent it
    app.add_middleware(CancelOnDisconnectMiddleware)  # a read whose client has gone stops, query and all
    if settings.rate_limit_per_second > 0:
        app.add_middleware(RateLimitMiddleware, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst,
                           identify=security.identify)
    app.add_middleware(UrlLengthMiddleware, max_bytes=settings.max_url_bytes)
    app.add_middleware(SecurityHeadersMiddleware,
                       cors_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()])
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics)  # added last = outermost
    _install_handlers(app)
    openapi.install(app)  # /openapi.json serves the committed openapi.yaml's document
    return app


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(_request: Request, exc: FhirError) -> Response:
        return fhir_response(exc.outcome(), exc.status, exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        """Parameters a FastAPI route refused (the FHIR router's endpoints check their own)."""
        issues: list[Issue] = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err.get("loc", ()) if p not in ("path", "query", "header", "body"))
            issues.append(Issue("invalid", f"Invalid {name or 'request'}: {err.get('msg')}",
                                expression=(name,) if name else (), msg_id="SF-0014"))
        refused = BadRequest(issues=issues or [Issue("invalid", "Invalid request", msg_id="SF-0014")])
        return fhir_response(refused.outcome(), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own 404 (no route) and 405 (route, other method) as OperationOutcomes."""
        if web.is_web(request.url.path):  # the web app's pages answer with a page
            return web.http_error_page(request, exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route that matched the path; ask the router for every method.
            headers["Allow"] = ", ".join(
                m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
                if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in request.app.router.routes)
            )
        if exc.status_code in (404, 405):
            return no_endpoint_response(request.method, request.url.path, exc.status_code, headers)
        body = operation_outcome([Issue(_HTTP_CODES.get(exc.status_code, "processing"), str(exc.detail),
                                        msg_id=f"SF-H{exc.status_code}")])
        return fhir_response(body, exc.status_code, headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        failure = as_fhir_error(exc)  # a database that is down or too slow: 503, not 500
        if failure is not None:
            return fhir_response(failure.outcome(), failure.status, failure.headers)
        log.exception("unhandled error", exc_info=exc)
        body = operation_outcome(
            [Issue("exception", "Internal server error; quote the X-Request-Id when reporting it", msg_id="SF-0500")]
        )
        return fhir_response(body, 500)

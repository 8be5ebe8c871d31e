"""System-level endpoints: the CapabilityStatement and batch/transaction (served by the FHIR router,
app/api/fhir_routes.py), and health, readiness and metrics (FastAPI routes)."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from app.api.auth import PrincipalDep
from app.api.deps import ContextDep, context_of, json_body, settings_of, unit_of_work
from app.api.responses import fhir_response, preferences
from app.api.router import table_of
from app.interactions.capabilities import capability_statement
from app.interactions.transaction import process
from app.security.policy import decide_operation
from app.storage.failures import RETRY_AFTER_S

router = APIRouter()

READY_TIMEOUT_S = 5.0


async def capabilities(request: Request) -> Response:
    """The CapabilityStatement: the resource types, interactions, search parameters and operations served."""
    if request.app.state.started is None:  # an app that serves without its lifespan (tests): first asked now
        request.app.state.started = context_of(request).clock.now()
    published = request.app.state.started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    settings = settings_of(request)
    return fhir_response(capability_statement(settings.fhir_base, published, table_of(request).operations(),
                                              limits=settings.search_limits,
                                              bundle_max_entries=settings.bundle_max_entries))


TAGS = ["FHIR system"]
_BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/fhir+json": {"schema": {"type": "object", "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": ["batch", "transaction"]},
        }}}},
    }
}


TRANSACTION_DOC: dict[str, Any] = {
    "tags": TAGS, "openapi_extra": _BUNDLE_BODY, "responses": {200: {"content": {"application/fhir+json": {}}}}}


async def transaction(request: Request) -> Response:
    """batch / transaction (https://hl7.org/fhir/R4/http.html#transaction) in one unit of work: a failed
    transaction raises, which rolls every entry back; app/interactions/transaction.py does the work."""
    body = await json_body(request)
    async with unit_of_work(request) as svc:
        bundle = await process(svc, body, preferences(request))
    return fhir_response(bundle, headers=svc.notes.header_values() or None)


@router.get("/healthz", name="healthz", tags=["operations"])
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", name="readyz", tags=["operations"])
async def readyz(ctx: ContextDep) -> Response:
    """Ready when the database answers within a few seconds and its schema is at this build's migration head."""
    from app.storage.migrate import current_revision, head_revision

    try:
        async with asyncio.timeout(READY_TIMEOUT_S), ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await current_revision(conn)
    except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
        # The exception type only: its message may name hosts or users, and /readyz needs no token.
        detail = (f"Cannot reach the database ({type(exc).__name__}); check SAFEFLAG_DATABASE_URL "
                  "and that the database server is running")
        return JSONResponse({"status": "unavailable", "database": "unreachable", "detail": detail}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    try:
        head = head_revision()
    except Exception as exc:  # noqa: BLE001 - a build without readable migrations is "not ready", never a 500
        detail = f"This build's migrations cannot be read ({type(exc).__name__}); reinstall SafeFlag"
        return JSONResponse({"status": "unavailable", "database": "reachable", "detail": detail}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    if current != head:
        detail = (f"The database schema is at migration {current or 'none'} but this build needs {head}: "
                  "run `safeflag migrate`")
        return JSONResponse(
            {"status": "unavailable", "database": "reachable", "migrations": {"current": current, "head": head},
             "detail": detail},
            status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return JSONResponse({"status": "ok", "database": "reachable", "migrations": {"current": current}})


@router.get("/metrics", name="metrics", tags=["operations"])
async def metrics(request: Request, principal: PrincipalDep) -> Response:
    """Prometheus text format; the pool gauges are read at scrape time. Not an open endpoint
    (it names teams and their workload): scrapers use an admin or system token, or the loopback-only listener of
    `SAFEFLAG_METRICS_BIND` (app/metrics_listener.py), which needs none."""
    decide_operation(principal, "metrics").enforce("metrics")
    # The classic text format (0.0.4): what every Prometheus version and scraper accepts.
    return Response(await render_metrics(request.app), media_type=CONTENT_TYPE_PLAIN_0_0_4)


async def render_metrics(app: Any) -> bytes:
    """Every figure, the pool gauges and the open / overdue acknowledgement Tasks per team
    (app/safeguarding/workload.py), read now."""
    from app.safeguarding import workload

    m, ctx = app.state.metrics, app.state.ctx
    m.observe_pool(ctx.engine.pool)
    async with ctx.sessionmaker() as session, session.begin():
        await workload.observe(m.registry, session, ctx.settings.fhir_base, ctx.clock.now())
    return bytes(generate_latest(m.registry))

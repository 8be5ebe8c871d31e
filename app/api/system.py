"""System-level endpoints: CapabilityStatement, health, readiness and metrics."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from app.api.deps import ContextDep
from app.api.responses import fhir_response
from app.fhir.capabilities import capability_statement

router = APIRouter()


@router.get("/fhir/metadata", name="capabilities", tags=["FHIR system"])
async def capabilities(request: Request, ctx: ContextDep) -> Response:
    published = request.app.state.started.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return fhir_response(capability_statement(ctx.settings.fhir_base, published))


@router.get("/healthz", name="healthz", tags=["operations"])
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", name="readyz", tags=["operations"])
async def readyz(ctx: ContextDep) -> Response:
    from app.storage.migrate import current_revision, head_revision

    try:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await current_revision(conn)
    except Exception:  # noqa: BLE001 - any database failure means "not ready"
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    head = head_revision()
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "reachable", "migrations": {"current": current, "head": head}},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "reachable", "migrations": {"current": current}})


@router.get("/metrics", name="metrics", tags=["operations"])
async def metrics(request: Request, ctx: ContextDep) -> Response:
    m = request.app.state.metrics
    pool = ctx.engine.pool
    checked = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checked):
        m.pool_checked_out.set(checked())
    if callable(size):
        m.pool_size.set(size())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


def started_now() -> datetime:
    return datetime.now(timezone.utc)

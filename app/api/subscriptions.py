"""Subscription operations and the websocket channel (Subscriptions Backport IG):
`$status` (type and instance level), `$events`, `$get-ws-binding-token`, and `/fhir/ws` for `bind-with-token`."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from starlette.responses import Response

from app.api.deps import context_of, json_body, media_type, settings_of, unit_of_work
from app.api.referrals import refuse_unknown
from app.api.responses import fhir_response
from app.api.router import IdPath
from app.errors import BadRequest, FhirError
from app.fhir.validation import check_id
from app.notify import operations as sub_ops
from app.notify.bundle import notification_bundle
from app.notify.channels.websocket import WebSocketRegistry
from app.notify.subscriptions import parse_spec
from app.storage.repository import utc_ms
from app.stored import format_instant
from app.vocabulary import BACKPORT_OPERATION

ws_router = APIRouter(tags=["Subscriptions"])  # the websocket channel: FastAPI's, the FHIR router serves HTTP
TAGS = ["Subscriptions"]

BACKPORT_OPS = BACKPORT_OPERATION
STATUS = BACKPORT_OPS + "backport-subscription-status"
EVENTS = BACKPORT_OPS + "backport-subscription-events"
GET_WS_BINDING_TOKEN = BACKPORT_OPS + "backport-subscription-get-ws-binding-token"


async def subscription_status_type(request: Request) -> Response:
    """The status of the Subscriptions named by `id` (each the caller's own, exactly as the instance
    level: another's id is 404 as an unknown one), or of all the caller's; `status` filters them."""
    refuse_unknown(request, ("id", "status"), "Subscription/$status")
    q = request.query_params
    ids = list(dict.fromkeys(i.strip() for v in q.getlist("id") for i in v.split(",")))
    statuses = {s.strip() for v in q.getlist("status") for s in v.split(",") if s.strip()}
    for sub_id in ids:
        check_id(sub_id)
    settings = settings_of(request)
    base = settings.fhir_base
    async with unit_of_work(request) as svc:
        if ids:
            subs = [await svc.read("Subscription", sub_id) for sub_id in ids]
        else:
            subs = await sub_ops.callers_subscriptions(svc, sorted(statuses), settings.max_count)
        shown = [sub for sub in subs if not statuses or sub.content.get("status") in statuses]
        self_url = f"{base}/Subscription/$status" + (f"?{urlencode(q.multi_items())}" if q else "")
        body = await sub_ops.status(svc.session, shown, base, self_url)
    return fhir_response(body)


async def subscription_status(res_id: IdPath, request: Request) -> Response:
    base = settings_of(request).fhir_base
    async with unit_of_work(request) as svc:
        sub = await svc.read("Subscription", res_id)
        body = await sub_ops.status(svc.session, [sub], base, f"{base}/Subscription/{sub.id}/$status")
    return fhir_response(body)


async def subscription_events(res_id: IdPath, request: Request) -> Response:
    q = request.query_params
    async with unit_of_work(request) as svc:
        sub = await svc.read("Subscription", res_id)
        body = await sub_ops.events(
            svc.session, sub, settings_of(request).fhir_base, since=q.get("eventsSinceNumber"),
            until=q.get("eventsUntilNumber"), content=q.get("content"), caller=svc.principal, now=svc.guard.now(),
        )
    return fhir_response(body)


def registry(request: Request | WebSocket) -> WebSocketRegistry:
    reg: WebSocketRegistry = request.app.state.ws_registry
    return reg


async def get_ws_binding_token(request: Request) -> Response:
    """A token for the websocket channel, for the Subscriptions named by `id` parameters in the body."""
    ids: list[str] = []
    if media_type(request):
        body = await json_body(request)
        for p in (body.get("parameter") or []) if isinstance(body, dict) else []:
            if isinstance(p, dict) and p.get("name") == "id" and isinstance(p.get("valueString"), str):
                ids.append(p["valueString"].rsplit("/", 1)[-1])
    return await _binding_token(request, ids)


async def get_ws_binding_token_instance(res_id: str, request: Request) -> Response:
    """A token for the websocket channel, for this Subscription."""
    return await _binding_token(request, [res_id])


async def _binding_token(request: Request, ids: list[str]) -> Response:
    ctx = context_of(request)
    if not ids:
        raise BadRequest("Name the subscription(s): Subscription/{id}/$get-ws-binding-token or an 'id' parameter",
                         msg_id="SF-0730")
    async with unit_of_work(request) as svc:
        for sub_id in ids:
            sub = await svc.read("Subscription", sub_id)
            if (sub.content.get("channel") or {}).get("type") != "websocket":
                raise BadRequest(f"Subscription/{sub_id} does not use the websocket channel", msg_id="SF-0731",
                                 expression="Subscription.channel.type")
    token, expires = registry(request).issue_token(set(ids))
    ws_url = ctx.settings.base_url.replace("http", "ws", 1).rstrip("/") + "/fhir/ws"
    return fhir_response({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "token", "valueString": token},
            {"name": "expiration", "valueDateTime": format_instant(utc_ms(expires))},
            *({"name": "subscription", "valueString": f"{ctx.settings.fhir_base}/Subscription/{i}"} for i in ids),
            {"name": "websocket-url", "valueUrl": ws_url},
        ],
    })


@ws_router.websocket("/fhir/ws")
async def websocket_channel(websocket: WebSocket) -> None:
    await websocket.accept()
    reg = registry(websocket)
    ctx = websocket.app.state.ctx
    try:
        while True:
            text = await websocket.receive_text()
            command, _, token = text.strip().partition(" ")
            if command != "bind-with-token" or not token:
                await websocket.send_text(orjson.dumps({"error": "expected 'bind-with-token <token>'"}).decode())
                continue
            sub_ids = reg.redeem(token.strip())
            if sub_ids is None:
                await websocket.send_text(orjson.dumps({"error": "unknown or expired token"}).decode())
                continue
            for sub_id in sorted(sub_ids):
                await _bind(ctx, reg, websocket, sub_id)
            ctx.wake.set()  # pending events for these subscriptions can now go out
    except WebSocketDisconnect:
        pass
    finally:
        reg.unbind(websocket)


async def _bind(ctx, reg: WebSocketRegistry, websocket: WebSocket, sub_id: str) -> None:  # type: ignore[no-untyped-def]
    from app.notify.operations import _count

    async with ctx.unit_of_work() as svc:
        sub = await svc.read("Subscription", sub_id)
        count = await _count(svc.session, sub_id)
    try:
        spec = parse_spec(sub_id, sub.content, base=ctx.settings.fhir_base, webhook_allow=[])
    except FhirError:
        return
    handshake = notification_bundle(
        fhir_base=ctx.settings.fhir_base, sub_id=sub_id, topic_url=spec.topic.url,
        status=str(sub.content.get("status")), type_="handshake", events_since_start=count,
        now=utc_ms(ctx.clock.now()), content=spec.content,
    )
    await websocket.send_text(orjson.dumps(handshake).decode())
    reg.bind(sub_id, websocket)

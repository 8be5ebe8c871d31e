"""The hot interactions (app/api/hot.py) are answered exactly as FastAPI's own routing answers them.

Every create / search / read shaped request, for every type and for paths that other routers own
(Binary's native read, `$qa-queue`, `.well-known`, `metadata`, conformance resources...), goes once
through the app and once through the same app without `HotRoutes`: the same route, status and body.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from app.api.hot import HotRoutes
from app.context import AppContext
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.main import create_app
from tests.conftest import admin_token

OTHER_FIRST_SEGMENTS = ["metadata", "_history", "$governance-report", "StructureDefinition", "CodeSystem",
                        ".well-known", "ws", "Unknown", ""]
SECOND_SEGMENTS = ["x", "a-1.2", "$qa-queue", "_history", "$validate", "_search", "smart-configuration",
                   "$safeguarding-summary", "x" * 65, "bad*id"]


def _shapes() -> list[tuple[str, str]]:
    out = []
    for first in [*SUPPORTED_TYPES, *OTHER_FIRST_SEGMENTS]:
        out += [("POST", f"/fhir/{first}"), ("GET", f"/fhir/{first}")]
        out += [("GET", f"/fhir/{first}/{second}") for second in SECOND_SEGMENTS]
    return out


async def _call(app: Any, method: str, path: str, token: str | None, body: bytes = b"") -> tuple[Any, ...]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/fhir+json"),
               (b"content-length", str(len(body)).encode()), (b"x-request-id", b"hot-routes-test")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080),
    }
    sent = False
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # as ASGI servers do: http.disconnect once the response is sent (or the client has gone)
            await answered.wait()
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    out: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = sorted((k, v) for k, v in message["headers"] if k not in (b"date", b"etag", b"location",
                                                                                        b"last-modified"))
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")
            if not message.get("more_body"):
                answered.set()

    await app(scope, receive, send)
    route = getattr(scope.get("route"), "name", None)
    if out["status"] >= 400:
        return route, out["status"], out["headers"], out["body"]
    # a Bundle or resource carries fresh ids and times (and a history grows with the AuditEvents)
    return route, out["status"], [h for h in out["headers"] if h[0] != b"content-length"], None


@pytest.fixture
def apps(clean_ctx: AppContext) -> tuple[Any, Any]:
    hot = create_app(ctx=clean_ctx)
    plain = create_app(ctx=clean_ctx)
    assert isinstance(plain.router.middleware_stack, HotRoutes)
    plain.router.middleware_stack = plain.router.middleware_stack.app
    return hot, plain


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "admin"])
async def test_every_shape_is_answered_as_fastapi_routes_it(apps: tuple[Any, Any], clean_ctx: AppContext,
                                                           authenticated: bool) -> None:
    hot, plain = apps
    token = admin_token(clean_ctx) if authenticated else None
    for method, path in _shapes():
        # an empty object: a create is refused before anything is written, so both apps see the same store
        body = b"{}" if method == "POST" else b""
        assert await _call(hot, method, path, token, body) == await _call(plain, method, path, token, body), path


async def test_a_create_read_and_search_pass_through_hot_routes(apps: tuple[Any, Any], clean_ctx: AppContext) -> None:
    hot, _ = apps
    token = admin_token(clean_ctx)
    org = orjson.dumps({"resourceType": "Organization", "name": "Hot Routes Trust"})
    route, status, _, _ = await _call(hot, "POST", "/fhir/Organization", token, org)
    assert (route, status) == ("create", 201)
    read_route, read_status, _, _ = await _call(hot, "GET", "/fhir/Organization/unknown-id", token)
    assert (read_route, read_status) == ("read", 404)


def test_the_routes_it_takes_and_leaves() -> None:
    app = create_app()
    hot = app.router.middleware_stack
    assert isinstance(hot, HotRoutes)

    def taken(method: str, path: str) -> str | None:
        hit = hot.match({"type": "http", "method": method, "path": path})
        return hit[0].name if hit else None

    assert taken("POST", "/fhir/Flag") == "create"
    assert taken("GET", "/fhir/Flag") == "search_type"
    assert taken("GET", "/fhir/Flag/abc-1.2") == "read"
    assert taken("GET", "/fhir/Binary") == "search_type"
    # owned by other routers, or not the shape of a create, read or search
    for method, path in [("GET", "/fhir/Binary/abc"), ("GET", "/fhir/DocumentReference/$qa-queue"),
                         ("GET", "/fhir/metadata"), ("POST", "/fhir/Flag/_search"), ("PUT", "/fhir/Flag/abc"),
                         ("GET", "/fhir/Flag/abc/_history"), ("GET", "/fhir/.well-known/smart-configuration"),
                         ("POST", "/fhir"), ("GET", "/fhir/Flag/bad*id"), ("GET", "/fhirx/Flag"),
                         ("GET", "/fhir/StructureDefinition")]:
        assert taken(method, path) is None, path

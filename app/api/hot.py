"""The hot interactions routed directly: create, read and search of a resource type.

FastAPI finds a route by trying every route of every included router in order, and then solves the
route's dependencies through its general machinery. SafeFlag has some 80 routes and the generic FHIR
ones come last (the specific ones must win), so a `POST /fhir/Flag` tried about 70 path patterns and
then solved five dependencies: together about a sixth of a create's CPU (README "Benchmarks").

`HotRoutes` sits in front of the router, inside FastAPI's exception handling (so a `FhirError` still
becomes its OperationOutcome) and inside every middleware (request id, log line, metrics, security
headers, rate limit). It answers only the requests whose route is known from the method and the path
alone, and answers them exactly as the route would:

- `POST /fhir/{type}` (create), `GET /fhir/{type}` (search), `GET /fhir/{type}/{id}` (read), for the
  types where no route of an earlier router claims that method and path (`hot_types`, worked out
  once from the routers themselves, not kept by hand); a read only for an id that passes the route's
  own pattern, so a bad id still gets the route's 400;
- the route's dependencies in the route's order: the Accept check, then authentication;
- the route's own endpoint function, with the route in the scope as FastAPI puts it there (the
  metrics and the log line are labelled by its name).

Everything else (and any path these patterns do not fit) goes to FastAPI's router unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.auth import authenticate, get_security
from app.api.deps import check_accept
from app.fhir.search.definitions import SUPPORTED_TYPES

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # the pattern of interactions.IdPath
# (method, route name, path segments after /fhir/): the interactions served here
HOT = (("POST", "create", 1), ("GET", "search_type", 1), ("GET", "read", 2))
_SAMPLE_ID = "x"


def _sample_path(rtype: str, segments: int) -> str:
    return f"/fhir/{rtype}" if segments == 1 else f"/fhir/{rtype}/{_SAMPLE_ID}"


def hot_types(earlier: Iterable[APIRouter]) -> dict[tuple[str, int], frozenset[str]]:
    """For each hot (method, segments): the types no route of an `earlier` router answers."""
    routes = [r for router in earlier for r in router.routes if isinstance(r, APIRoute)]
    out: dict[tuple[str, int], frozenset[str]] = {}
    for method, _name, segments in HOT:
        out[(method, segments)] = frozenset(
            t for t in SUPPORTED_TYPES
            if not any(method in (r.methods or ()) and r.path_regex.match(_sample_path(t, segments)) for r in routes)
        )
    return out


class HotRoutes:
    """ASGI app in front of FastAPI's router (module docstring)."""

    def __init__(self, app: ASGIApp, interactions: APIRouter, earlier: Iterable[APIRouter]) -> None:
        self.app = app
        by_name = {r.name: r for r in interactions.routes if isinstance(r, APIRoute)}
        self.routes = {(method, segments): by_name[name] for method, name, segments in HOT}
        self.types = hot_types(earlier)

    def match(self, scope: Scope) -> tuple[APIRoute, dict[str, str]] | None:
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "POST") or not path.startswith("/fhir/"):
            return None
        parts = path[6:].split("/")
        key = (method, len(parts))
        route = self.routes.get(key)
        if route is None or parts[0] not in self.types[key]:
            return None
        if len(parts) == 1:
            return route, {"resource_type": parts[0]}
        if _ID.fullmatch(parts[1]) is None:
            return None
        return route, {"resource_type": parts[0], "res_id": parts[1]}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hit = self.match(scope) if scope["type"] == "http" else None
        if hit is None:
            await self.app(scope, receive, send)
            return
        route, params = hit
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, params
        request = Request(scope, receive)
        await check_accept(request)
        await authenticate(request, await get_security(request))
        endpoint: Any = route.endpoint
        response = await endpoint(request=request, ctx=request.app.state.ctx, **params)
        await response(scope, receive, send)

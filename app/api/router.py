"""The FHIR router: one dispatch table for every HTTP endpoint under /fhir (app/api/fhir_routes.py
lists them), mounted once in front of FastAPI's own routes.

A request is looked up by its method and the shape of its path. A template is a list of segments,
each a literal (`Patient`, `_history`, `$validate`), an operation name (`${name}`: any segment that
starts with `$`) or a parameter (`{res_id}`: any non-empty segment). When several templates fit a
path, the one whose segments are more literal wins, compared from the left: a literal beats an
operation name, which beats a parameter. So `Binary/{res_id}` beats `{resource_type}/{res_id}`,
`{resource_type}/_history` and `{resource_type}/$validate` beat `{resource_type}/{res_id}`, and
`$anything` is never taken for a logical id. Two templates with the same shape for one method are
refused when the table is built, so the answer never depends on the order of the list.

When a template fits: the entry's guards run in order (the Accept check, then the bearer token, for
most), then every parameter the endpoint annotates as `IdPath` is checked against the FHIR id pattern
(`$name` there is an operation this server does not serve), then the endpoint is called with the
request and the path parameters. When none fits: 405 with `Allow` if the path is served with other
methods, a 307 to the path without its trailing slash where that one is served, else 404, each as
an OperationOutcome (before any token is looked at, as for every unknown path).

The same table gives the operations the CapabilityStatement lists (`operations`) and, for the OpenAPI
document only, one FastAPI route per entry (`documentation_routes`): FastAPI's parameter handling
never runs on a FHIR request, which is what keeps a read, search or create cheap.

Layer: `app/api`, the HTTP edge, under the composition in app/main.py (which mounts it) and above the
interaction engine (app/interactions/) that the endpoints call; it knows nothing of FHIR rules itself.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path
from fastapi.routing import APIRoute
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from app.api.auth import authenticate
from app.api.deps import audit_refused_route, check_accept
from app.api.responses import no_endpoint_response
from app.errors import BadRequest, FhirError, MethodNotAllowed
from app.fhir.ids import ID_RE
from app.fhir.search.definitions import SUPPORTED_TYPES
from app.fhir.validation import check_id

PREFIX = "/fhir"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

TypePath = Annotated[str, Path(description="FHIR resource type", json_schema_extra={"enum": list(SUPPORTED_TYPES)})]
IdPath = Annotated[str, Path(description="Logical id", pattern=ID_RE.pattern)]

Endpoint = Callable[..., Awaitable[Response]]
Guard = Callable[[Request], Awaitable[Any]]
FHIR_GUARDS: tuple[Guard, ...] = (check_accept, authenticate)

# segment ranks, compared from the left: the higher wins
LITERAL, OPERATION, PARAMETER = 2, 1, 0


@dataclass(frozen=True)
class Segment:
    """One segment of a template: a literal, `${name}` or `{name}`."""

    text: str  # the literal, or the parameter's name
    rank: int

    @classmethod
    def parse(cls, text: str) -> Segment:
        if text.startswith("${") and text.endswith("}"):
            return cls(text[2:-1], OPERATION)
        if text.startswith("{") and text.endswith("}"):
            return cls(text[1:-1], PARAMETER)
        return cls(text, LITERAL)

    def fits(self, value: str) -> bool:
        if self.rank == LITERAL:
            return value == self.text
        if self.rank == OPERATION:
            return len(value) > 1 and value[0] == "$"
        return value != ""


def split(path: str) -> list[str]:
    """`/fhir/Flag/1` -> ["Flag", "1"]; `/fhir` -> []; `/fhir/` -> [""]."""
    rest = path[len(PREFIX):]
    return rest[1:].split("/") if rest else []


@dataclass(eq=False)
class Entry:
    """One endpoint: method, template (after /fhir), the function that answers, and what it is."""

    method: str
    template: str  # "" (the base itself), "/{resource_type}", "/Patient/{res_id}/$safeguarding-summary"...
    endpoint: Endpoint  # called as endpoint(request=request, **path parameters)
    name: str  # the interaction's name: metrics, the log line and the audit of a refused id use it
    guards: tuple[Guard, ...] = FHIR_GUARDS
    operation: str | None = None  # the OperationDefinition's canonical, when the entry serves a FHIR operation
    doc: dict[str, Any] = field(default_factory=dict)  # APIRoute arguments for the OpenAPI document only
    segments: tuple[Segment, ...] = field(init=False)
    ids: tuple[str, ...] = field(init=False)  # the path parameters checked against the id pattern

    def __post_init__(self) -> None:
        self.segments = tuple(Segment.parse(s) for s in self.template.split("/")[1:])
        hints = typing.get_type_hints(self.endpoint, include_extras=True)
        self.ids = tuple(s.text for s in self.segments if s.rank != LITERAL and hints.get(s.text) == IdPath)

    @property
    def path(self) -> str:
        return PREFIX + self.template

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(s.rank for s in self.segments)

    def fit(self, parts: Sequence[str]) -> dict[str, str] | None:
        """The path parameters when `parts` fits this entry's template (same length already), else None."""
        params: dict[str, str] = {}
        for segment, value in zip(self.segments, parts, strict=True):
            if not segment.fits(value):
                return None
            if segment.rank == OPERATION:
                params[segment.text] = value[1:]
            elif segment.rank == PARAMETER:
                params[segment.text] = value
        return params


class RouteTable:
    """The entries, indexed by method and number of segments, each list most literal first."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = tuple(entries)
        index: dict[tuple[str, int], list[Entry]] = {}
        shapes: dict[tuple[str, tuple[tuple[str, int], ...]], Entry] = {}
        for entry in self.entries:
            shape = (entry.method, tuple(("" if s.rank != LITERAL else s.text, s.rank) for s in entry.segments))
            if shape in shapes:
                raise ValueError(f"{entry.method} {entry.path} has the shape of {shapes[shape].path} "
                                 f"({shapes[shape].name}): which answers would depend on the order of the table")
            shapes[shape] = entry
            index.setdefault((entry.method, len(entry.segments)), []).append(entry)
        for candidates in index.values():
            candidates.sort(key=lambda e: e.ranks, reverse=True)
        self._index = index

    def match(self, method: str, parts: Sequence[str]) -> tuple[Entry, dict[str, str]] | None:
        """The most literal entry whose template fits, with its path parameters."""
        for entry in self._index.get((method, len(parts)), ()):
            params = entry.fit(parts)
            if params is not None:
                return entry, params
        return None

    def allowed(self, parts: Sequence[str]) -> list[str]:
        """The methods some entry serves at this path."""
        return [m for m in METHODS if self.match(m, parts) is not None]

    def operation_methods(self, parts: Sequence[str]) -> list[str]:
        """The methods a served operation (a template ending in a literal `$name`) answers at this path."""
        return [m for m in METHODS if any(e.operation is not None and e.fit(parts) is not None
                                          for e in self._index.get((m, len(parts)), ()))]

    def operations(self) -> dict[str, tuple[str, tuple[str, ...] | None]]:
        """name -> (canonical, the types it is served on: None for every type, () at the system level)."""
        found: dict[str, tuple[str, list[tuple[str, ...] | None]]] = {}
        for entry in self.entries:
            if entry.operation is not None:
                first = entry.segments[0]
                types = () if len(entry.segments) == 1 else (first.text,) if first.rank == LITERAL else None
                found.setdefault(entry.segments[-1].text[1:], (entry.operation, []))[1].append(types)
        return {name: (canonical, None if None in levels else tuple(dict.fromkeys(t for ts in levels if ts for t in ts)))
                for name, (canonical, levels) in found.items()}

    def documentation_routes(self) -> list[APIRoute]:
        """FastAPI routes for the OpenAPI document: the same paths, endpoints (whose signatures name the
        path parameters), guards (as dependencies: an entry without `authenticate` is open) and the
        entry's own documentation. They are never served."""
        return [
            APIRoute(entry.path, entry.endpoint, methods=[entry.method], name=entry.name,
                     dependencies=[Depends(guard) for guard in entry.guards], **entry.doc)
            for entry in self.entries
        ]


def table_of(request: Request) -> RouteTable:
    table: RouteTable = request.app.state.fhir_table
    return table


def unknown_operation(request: Request, name: str, resource_type: str | None = None,
                      res_id: str | None = None) -> FhirError:
    """400 `not-supported` naming `$name` (https://hl7.org/fhir/R4/operations.html#executing), or 405
    with `Allow` when an operation is served at this path with another method."""
    allowed = table_of(request).operation_methods(split(request.scope["path"]))
    if allowed:
        return MethodNotAllowed(f"${name} is not invoked with {request.method} here (allowed: {', '.join(allowed)})",
                                msg_id="SF-0261", code="not-supported", headers={"Allow": ", ".join(allowed)})
    where = ("at the system level" if resource_type is None
             else f"on {resource_type}" if res_id is None else f"on a {resource_type} instance")
    return BadRequest(f"Operation ${name} is not supported {where}", msg_id="SF-0260", code="not-supported")


class FhirRoute(BaseRoute):
    """Every HTTP request under /fhir, answered from the table (module docstring)."""

    def __init__(self, table: RouteTable) -> None:
        self.table = table

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(PREFIX) and (len(path) == len(PREFIX) or path[len(PREFIX)] == "/"):
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = split(scope["path"])
        hit = self.table.match(scope["method"], parts)
        if hit is None:
            response = self._no_entry(scope, parts)
        else:
            entry, params = hit
            scope["route"], scope["endpoint"], scope["path_params"] = entry, entry.endpoint, params
            request = Request(scope, receive)
            for guard in entry.guards:
                await guard(request)
            for name in entry.ids:
                await self._check_id(request, entry, params, params[name])
            response = await entry.endpoint(request=request, **params)
        await response(scope, receive, send)

    async def _check_id(self, request: Request, entry: Entry, params: dict[str, str], value: str) -> None:
        if value.startswith("$"):  # `$name` where an id goes: an operation not served here
            raise unknown_operation(request, value[1:], params.get("resource_type", entry.segments[0].text))
        try:
            check_id(value)
        except BadRequest as bad_id:
            refused = BadRequest(issues=bad_id.issues)
            await audit_refused_route(request, refused)  # an access attempt like any other
            raise refused from None

    def _no_entry(self, scope: Scope, parts: list[str]) -> Response:
        method, path = scope["method"], scope["path"]
        allowed = self.table.allowed(parts)
        if allowed:
            return no_endpoint_response(method, path, 405, {"Allow": ", ".join(allowed)})
        if path.endswith("/") and self.table.allowed(split(path.rstrip("/"))):  # as Starlette's router does
            return RedirectResponse(str(URL(scope={**scope, "path": path.rstrip("/")})))
        return no_endpoint_response(method, path, 404)

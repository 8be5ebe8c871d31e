"""Operations SafeFlag does not serve: `GET|POST /fhir/$name`, `/fhir/<Type>/$name` and
`/fhir/<Type>/<id>/$name` for any name no route serves there (`Patient/$everything`, or one of ours
on the wrong type such as `Flag/$safeguarding-summary`) answer 400 with issue code `not-supported`
naming the operation (https://hl7.org/fhir/R4/operations.html#executing: a server that does not
support an operation answers 400 or 404), instead of reading `$name` as a logical id. An operation we
serve there, asked with another method, is 405 with `Allow`.

Include this router after every router that serves an operation and BEFORE `interactions.router`,
whose `/{resource_type}/{res_id}` routes would take `$name` for an id. The read routes of earlier
routers that take an id (`Binary/{id}`, the conformance resources) hand a `$name` id here too
(`refuse_operation`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import Match

from app.api.auth import authenticate
from app.api.deps import check_accept
from app.errors import BadRequest, FhirError, MethodNotAllowed

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept), Depends(authenticate)],
                   include_in_schema=False)
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _served_methods(request: Request) -> list[str]:
    """The methods some operation route of the application serves at this path."""
    routes: list[APIRoute] = []
    for top in request.app.router.routes:
        included = getattr(top, "original_router", None)  # FastAPI keeps each included router whole
        if included is not router:
            routes += [r for r in (included.routes if included is not None else [top])
                       if isinstance(r, APIRoute) and "/$" in r.path]
    return [m for m in _METHODS
            if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)]


def unknown_operation(request: Request, name: str, resource_type: str | None = None,
                      res_id: str | None = None) -> FhirError:
    """400 `not-supported` naming `$name` (405 when it is served here with another method)."""
    allowed = _served_methods(request)
    if allowed:
        return MethodNotAllowed(f"${name} is not invoked with {request.method} here (allowed: {', '.join(allowed)})",
                                msg_id="SF-0261", code="not-supported", headers={"Allow": ", ".join(allowed)})
    where = ("at the system level" if resource_type is None
             else f"on {resource_type}" if res_id is None else f"on a {resource_type} instance")
    return BadRequest(f"Operation ${name} is not supported {where}", msg_id="SF-0260", code="not-supported")


def refuse_operation(request: Request, resource_type: str, res_id: str) -> None:
    """For a read route that takes an id: `$name` in the id's place is an operation, not an id."""
    if res_id.startswith("$"):
        raise unknown_operation(request, res_id[1:], resource_type)


@router.api_route("/${name}", methods=["GET", "POST"], name="unknown_system_operation")
async def system_operation(name: str, request: Request) -> Response:
    raise unknown_operation(request, name)


@router.api_route("/{resource_type}/${name}", methods=["GET", "POST"], name="unknown_type_operation")
async def type_operation(resource_type: str, name: str, request: Request) -> Response:
    raise unknown_operation(request, name, resource_type)


@router.api_route("/{resource_type}/{res_id}/${name}", methods=["GET", "POST"], name="unknown_instance_operation")
async def instance_operation(resource_type: str, res_id: str, name: str, request: Request) -> Response:
    raise unknown_operation(request, name, resource_type, res_id)

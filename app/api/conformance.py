"""Read-only routes for the conformance resources of `fhir_profiles/` (app/fhir/conformance.py):
`GET /fhir/{StructureDefinition|CodeSystem|ValueSet|SearchParameter|ConceptMap|OperationDefinition}[/{id}]`; every write
interaction answers 405. Each read and search is audited like any other (contract section 3); every
authenticated role may read them, as they describe the API rather than anyone's record.

Include this router BEFORE `interactions.router`, whose `/{resource_type}` routes would otherwise
answer these types 404 (not a supported type)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.api.auth import authenticate
from app.api.deps import check_accept, unit_of_work
from app.api.responses import fhir_response, preferences
from app.api.unknown_operations import refuse_operation
from app.fhir import conformance
from app.fhir.conformance import CONFORMANCE_TYPES

router = APIRouter(
    prefix="/fhir",
    dependencies=[Depends(check_accept), Depends(authenticate)],
    tags=["Conformance resources"],
)
Endpoint = Callable[..., Awaitable[Response]]
_OK: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}
}


def _search(rtype: str) -> Endpoint:
    async def search_type(request: Request) -> Response:
        query = list(request.query_params.multi_items())
        settings = request.app.state.ctx.settings
        async with unit_of_work(request) as svc:
            svc.guard.begin("search-type", rtype, query=f"{rtype}?{urlencode(query)}")
            bundle = conformance.search(
                rtype,
                query,
                fhir_base=settings.fhir_base,
                default_count=settings.default_count,
                max_count=settings.max_count,
                strict=preferences(request).strict,
            )
            await svc.guard.audited()
        return fhir_response(bundle)

    return search_type


def _read(rtype: str) -> Endpoint:
    async def read(res_id: str, request: Request) -> Response:
        refuse_operation(request, rtype, res_id)
        async with unit_of_work(request) as svc:
            svc.guard.begin("read", rtype, res_id)
            resource = conformance.read(rtype, res_id)
            await svc.guard.audited()
        return fhir_response(resource)

    return read


async def _refused(rtype: str, interaction: str, res_id: str | None, request: Request) -> Response:
    error = conformance.read_only(rtype)
    async with unit_of_work(request) as svc:  # the refused attempt is audited like any other
        svc.guard.begin(interaction, rtype, res_id)
        raise error
    raise error  # not reached (the unit of work re-raises); for the type checker


def _refuse_type(rtype: str, interaction: str) -> Endpoint:
    async def refuse(request: Request) -> Response:
        return await _refused(rtype, interaction, None, request)

    return refuse


def _refuse_instance(rtype: str, interaction: str) -> Endpoint:
    async def refuse(res_id: str, request: Request) -> Response:
        return await _refused(rtype, interaction, res_id, request)

    return refuse


_WRITES = (("POST", "create"), ("PUT", "update"), ("PATCH", "patch"), ("DELETE", "delete"))
_REFUSED: dict[int | str, dict[str, Any]] = {
    405: {"description": "OperationOutcome: conformance resources are read-only"}
}
for _type in CONFORMANCE_TYPES:
    _key = _type.lower()
    router.add_api_route(f"/{_type}", _search(_type), methods=["GET"], name=f"search_{_key}", responses=_OK)
    router.add_api_route(
        f"/{_type}/{{res_id}}", _read(_type), methods=["GET"], name=f"read_{_key}", responses=_OK
    )
    for _method, _interaction in _WRITES:
        for _path, _refuse, _level in (
            (f"/{_type}", _refuse_type, "type_"),
            (f"/{_type}/{{res_id}}", _refuse_instance, ""),
        ):
            if _method != "POST" or _level:  # POST to an instance is no FHIR interaction at all
                router.add_api_route(
                    _path,
                    _refuse(_type, _interaction),
                    methods=[_method],
                    name=f"{_interaction}_{_level}{_key}",
                    responses=_REFUSED,
                )

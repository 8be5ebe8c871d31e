"""Thin endpoints named after the FHIR RESTful interactions (https://hl7.org/fhir/R4/http.html):
parse the HTTP request, call `FhirService` inside one unit of work, render the result. The FHIR
router (app/api/fhir_routes.py) maps method and path to them; their documentation for the OpenAPI
document (bodies, statuses) is here beside them."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.responses import Response

from app.api.deps import json_body, media_type, read_body, settings_of, unit_of_work
from app.api.responses import fhir_response, preferences, read_response, summary_of, write_response
from app.api.router import IdPath, TypePath
from app.errors import BadRequest, UnsupportedMediaType
from app.interactions.preconditions import conditional_criteria, conditional_query

TAGS = ["FHIR interactions"]

_RESOURCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": {"type": "object", "properties": {"resourceType": {"type": "string"}}}}
        },
    }
}
_PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        },
    }
}
_FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
    }
}
_FHIR_OK: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}
}
# the OpenAPI documentation of each endpoint (APIRoute arguments), by endpoint name
DOC: dict[str, dict[str, Any]] = {
    "create": {"status_code": 201, "openapi_extra": _RESOURCE_BODY, "responses": {201: _FHIR_OK[200]}},
    "search_type_post": {"responses": _FHIR_OK, "openapi_extra": _FORM_BODY},
    "conditional_update": {"openapi_extra": _RESOURCE_BODY, "responses": _FHIR_OK},
    "update": {"openapi_extra": _RESOURCE_BODY, "responses": _FHIR_OK},
    "conditional_patch": {"openapi_extra": _PATCH_BODY, "responses": _FHIR_OK},
    "patch": {"openapi_extra": _PATCH_BODY, "responses": _FHIR_OK},
    "conditional_delete": {"status_code": 204},
    "delete": {"status_code": 204},
}


def doc(name: str) -> dict[str, Any]:
    return {"tags": TAGS, **DOC.get(name, {"responses": _FHIR_OK})}


def _query(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _strict(request: Request) -> bool:
    return preferences(request).strict


async def history_system(request: Request) -> Response:
    async with unit_of_work(request) as svc:
        bundle = await svc.history(None, None, _query(request))
    return fhir_response(bundle)


async def history_type(resource_type: TypePath, request: Request) -> Response:
    async with unit_of_work(request) as svc:
        bundle = await svc.history(resource_type, None, _query(request))
    return fhir_response(bundle)


async def search_type(resource_type: TypePath, request: Request) -> Response:
    async with unit_of_work(request) as svc:
        bundle = await svc.search(resource_type, _query(request), strict=_strict(request))
    return fhir_response(bundle)


async def search_type_post(resource_type: TypePath, request: Request) -> Response:
    mt = media_type(request)
    if mt not in ("", "application/x-www-form-urlencoded"):
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded parameters",
                                   msg_id="SF-0011")
    raw = await read_body(request, settings_of(request).max_body_bytes)
    try:
        form = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise BadRequest("The form body is not UTF-8", msg_id="SF-0012") from exc
    async with unit_of_work(request) as svc:
        bundle = await svc.search(resource_type, _query(request) + form, strict=_strict(request))
    return fhir_response(bundle)


async def create(resource_type: TypePath, request: Request) -> Response:
    body = await json_body(request)
    # conditional create: search parameters in the query string (fhirpy) or the If-None-Exist header
    conditional: list[tuple[str, str]] | None = conditional_criteria(_query(request)) or None
    header = request.headers.get("if-none-exist")
    if conditional is None and header is not None:
        conditional = conditional_query(header, resource_type)
    async with unit_of_work(request) as svc:
        outcome = await svc.create(resource_type, body, if_none_exist=conditional)
    return write_response(request, outcome, settings_of(request).fhir_base)


async def conditional_update(resource_type: TypePath, request: Request) -> Response:
    body = await json_body(request)
    async with unit_of_work(request) as svc:
        outcome = await svc.conditional_update(
            resource_type, _query(request), body, if_match=request.headers.get("if-match")
        )
    return write_response(request, outcome, settings_of(request).fhir_base)


async def conditional_patch(resource_type: TypePath, request: Request) -> Response:
    body = await json_body(request, patch=True)
    async with unit_of_work(request) as svc:
        outcome = await svc.conditional_patch(
            resource_type, _query(request), body, media_type(request), if_match=request.headers.get("if-match")
        )
    return write_response(request, outcome, settings_of(request).fhir_base)


async def conditional_delete(resource_type: TypePath, request: Request) -> Response:
    async with unit_of_work(request) as svc:
        outcome = await svc.conditional_delete(resource_type, _query(request))
    return write_response(request, outcome, settings_of(request).fhir_base)


async def read(resource_type: TypePath, res_id: IdPath, request: Request) -> Response:
    summary = summary_of(request)
    async with unit_of_work(request) as svc:
        stored = await svc.read(resource_type, res_id)
    return read_response(request, stored, summary)


async def update(resource_type: TypePath, res_id: IdPath, request: Request) -> Response:
    body = await json_body(request)
    async with unit_of_work(request) as svc:
        outcome = await svc.update(resource_type, res_id, body, if_match=request.headers.get("if-match"))
    return write_response(request, outcome, settings_of(request).fhir_base)


async def patch(resource_type: TypePath, res_id: IdPath, request: Request) -> Response:
    body = await json_body(request, patch=True)
    async with unit_of_work(request) as svc:
        outcome = await svc.patch(
            resource_type, res_id, body, media_type(request), if_match=request.headers.get("if-match")
        )
    return write_response(request, outcome, settings_of(request).fhir_base)


async def delete(resource_type: TypePath, res_id: IdPath, request: Request) -> Response:
    async with unit_of_work(request) as svc:
        outcome = await svc.delete(resource_type, res_id, if_match=request.headers.get("if-match"))
    return write_response(request, outcome, settings_of(request).fhir_base)


async def history_instance(resource_type: TypePath, res_id: IdPath, request: Request) -> Response:
    async with unit_of_work(request) as svc:
        bundle = await svc.history(resource_type, res_id, _query(request))
    return fhir_response(bundle)


async def vread(
    request: Request, resource_type: TypePath, res_id: IdPath, version_id: str
) -> Response:
    summary = summary_of(request)
    async with unit_of_work(request) as svc:
        stored = await svc.vread(resource_type, res_id, version_id)
    return read_response(request, stored, summary)

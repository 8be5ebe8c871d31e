"""The OpenAPI description of the HTTP API, as served at /openapi.json and committed as openapi.yaml.

FastAPI's generated schema (for /fhir, of one route per row of the FHIR router's table, built for the
document only: app/api/router.py), adjusted to what the routes really answer (https://hl7.org/fhir/R4/http.html):
every /fhir response is `application/fhir+json` (a resource, a Bundle or an OperationOutcome), every
4xx is an OperationOutcome, and FastAPI's `422 HTTPValidationError` is dropped because parameter errors
answer 400 with an OperationOutcome. That keeps schemathesis (tests/api/test_schemathesis.py) honest.

It also says what FastAPI cannot see: bearer authentication (every operation but the open ones, found
from the routes' dependencies), the server, each type's search parameters (`x-search-parameters`, from
the search registry), the statuses of conditional create (200), update-as-create (201) and of what no
one may write (405).

`make openapi` writes it to openapi.yaml (app/openapi_yaml.py, which builds the app to describe it);
tests/test_openapi.py fails when the committed file is stale.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute

from app.vocabulary import NHS_NUMBER_SYSTEM

FHIR_JSON = "application/fhir+json"
METHODS = ("get", "put", "post", "delete", "patch")

OPERATION_OUTCOME: dict[str, Any] = {
    "type": "object",
    "description": "https://hl7.org/fhir/R4/operationoutcome.html",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
RESOURCE: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 resource (https://hl7.org/fhir/R4/resource.html): a Bundle for search and history",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}
_ERROR = {
    "description": "OperationOutcome saying what was wrong",
    "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}},
}


# Examples: documentation, and the requests schemathesis's examples phase sends (a valid create and update).
EXAMPLE_ID = "example"
EXAMPLE_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9990000018"}],
    "name": [{"family": "Smith", "given": ["Amy"]}],
    "gender": "female",
    "birthDate": "2020-02-03",
}
_BODY_EXAMPLES: dict[str, Any] = {
    "application/json-patch+json": [{"op": "replace", "path": "/gender", "value": "unknown"}],
    "application/merge-patch+json": {"gender": "unknown"},
    "application/x-www-form-urlencoded": {"gender": "female"},
}


def _examples(path: str, method: str, op: dict[str, Any]) -> None:
    for param in op.get("parameters", []):
        if param.get("in") == "path":
            param["example"] = {"resource_type": "Patient", "res_id": EXAMPLE_ID}.get(param["name"], EXAMPLE_ID)
    for media, content in op.get("requestBody", {}).get("content", {}).items():
        if media == FHIR_JSON and path == "/fhir":
            content["example"] = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": EXAMPLE_PATIENT, "request": {"method": "POST", "url": "Patient"}}]}
        elif media == FHIR_JSON:
            with_id = method == "put" and "{res_id}" in path
            content["example"] = {**EXAMPLE_PATIENT, "id": EXAMPLE_ID} if with_id else EXAMPLE_PATIENT
        elif media in _BODY_EXAMPLES:
            content["example"] = _BODY_EXAMPLES[media]


def _fhir_operation(op: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    responses.pop("422", None)  # FastAPI's HTTPValidationError: our parameter errors are 400 OperationOutcomes
    for status, response in responses.items():
        content = response.get("content")
        if content is None or status.startswith("4"):
            continue
        # success bodies are resources (a Bundle, an OperationOutcome for $validate...), never plain JSON
        response["content"] = {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}}
    responses["4XX"] = copy.deepcopy(_ERROR)


def _other_operation(path: str, op: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    if path == "/metrics":
        responses["200"] = {"description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}}}
    else:
        for response in responses.values():
            if "content" in response:
                response["content"] = {"application/json": {"schema": {"type": "object"}}}


BEARER: dict[str, Any] = {
    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
    "description": "A JWT from the local issuer (`safeflag token`, or `POST /auth/token` for SMART Backend "
                   "Services clients) or a configured identity provider; 401 with `WWW-Authenticate` without one",
}
SERVERS = [{"url": "http://127.0.0.1:8080", "description": "`safeflag serve`'s default; a deployment answers at "
                                                           "its SAFEFLAG_BASE_URL"}]


def _outcome(description: str) -> dict[str, Any]:
    return {**copy.deepcopy(_ERROR), "description": description}


def _resource(description: str) -> dict[str, Any]:
    return {"description": description, "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}}}


def _write_statuses(paths: dict[str, Any]) -> None:
    """The statuses the write routes really answer (https://hl7.org/fhir/R4/http.html#create, #update)."""
    from app.security.policy import NEVER_DELETED, SERVER_WRITTEN

    server_written = _outcome(f"{', '.join(sorted(SERVER_WRITTEN))}: written by the server only (SF-0406)")
    never_deleted = _outcome(f"{', '.join(sorted(NEVER_DELETED))}: never deleted (SF-0405)")
    created = _resource("created: the new resource, with `Location` and `ETag`")
    updated = _resource("updated: the new version")
    answers = {
        ("/fhir/{resource_type}", "post"): {
            "201": created, "405": server_written,
            "200": _resource("conditional create (`If-None-Exist`, or search parameters in the query) matched "
                             "one resource: that resource, nothing written")},
        ("/fhir/{resource_type}/{res_id}", "put"): {
            "200": updated, "201": _resource("update-as-create: no resource had this id, it is created"),
            "405": server_written},
        ("/fhir/{resource_type}", "put"): {
            "200": updated, "201": _resource("conditional update matched nothing: created"), "405": server_written},
        ("/fhir/{resource_type}/{res_id}", "patch"): {"200": updated, "405": server_written},
        ("/fhir/{resource_type}", "patch"): {"200": updated, "405": server_written},
        ("/fhir/{resource_type}/{res_id}", "delete"): {"405": never_deleted},
        ("/fhir/{resource_type}", "delete"): {"405": never_deleted},
    }
    for (path, method), responses in answers.items():
        op = paths.get(path, {}).get(method)
        if op is not None:
            op["responses"].update(copy.deepcopy(responses))


def _search_parameters(paths: dict[str, Any]) -> None:
    """Each type's search parameters (name, type, description) on the type-level search operations."""
    from app.fhir.search.definitions import SPECIAL, SUPPORTED_TYPES, params_for

    by_type = {
        rtype: [{"name": name, "type": kind} for name, kind in SPECIAL.items()]
        + [{"name": p.name, "type": p.type, **({"description": p.description} if p.description else {})}
           for p in sorted(params_for(rtype).values(), key=lambda p: p.name)]
        for rtype in SUPPORTED_TYPES
    }
    for path, method in (("/fhir/{resource_type}", "get"), ("/fhir/{resource_type}/_search", "post")):
        op = paths.get(path, {}).get(method)
        if op is not None:
            op["x-search-parameters"] = by_type
            op["description"] = (op.get("description", "") + "\n\nSearch parameters of each type: "
                                 "`x-search-parameters`; the result parameters (`_count`, `_sort`, `_include`, "
                                 "`_revinclude`, `_summary`, `_elements`) apply to all.").strip()


def documented_routes(app: FastAPI) -> list[BaseRoute]:
    """The app's routes, the FHIR router standing for its table's rows."""
    from app.api.router import FhirRoute

    out: list[BaseRoute] = []
    for route in app.routes:
        out += route.table.documentation_routes() if isinstance(route, FhirRoute) else [route]
    return out


def _open_routes(routes: list[BaseRoute]) -> set[tuple[str, str]]:
    """(path, method) of the routes that need no token: no `authenticate` among their dependencies."""
    from fastapi.routing import iter_route_contexts

    from app.api.auth import authenticate

    def needs(dependant: Any) -> bool:
        return dependant.call is authenticate or any(needs(d) for d in dependant.dependencies)

    return {(rc.path_format, m.lower()) for rc in iter_route_contexts(routes)
            if rc.path_format is not None
            and (dependant := getattr(rc.original_route, "dependant", None)) is not None and not needs(dependant)
            for m in rc.methods or ()}


def build(app: FastAPI) -> dict[str, Any]:
    """The adjusted OpenAPI schema of `app`."""
    routes = documented_routes(app)
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=routes,
                         servers=SERVERS)
    open_routes = _open_routes(routes)
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            if path == "/fhir" or path.startswith("/fhir/"):
                _fhir_operation(op)
                _examples(path, method, op)
            else:
                _other_operation(path, op)
            if (path, method) in open_routes:
                op["security"] = []  # open: no token needed
    paths = schema.get("paths", {})
    _write_statuses(paths)
    _search_parameters(paths)
    schema["security"] = [{"bearer": []}]
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = BEARER
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["OperationOutcome"] = OPERATION_OUTCOME
    schemas["Resource"] = RESOURCE
    return schema


def install(app: FastAPI) -> None:
    """Serve the adjusted schema at /openapi.json (the same document as the committed openapi.yaml)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""The OpenAPI description of the HTTP API, as served at /openapi.json and committed as openapi.yaml.

FastAPI's generated schema, adjusted to what the routes really answer (https://hl7.org/fhir/R4/http.html):
every /fhir response is `application/fhir+json` (a resource, a Bundle or an OperationOutcome), every
4xx is an OperationOutcome, and FastAPI's `422 HTTPValidationError` is dropped because parameter errors
answer 400 with an OperationOutcome. That keeps schemathesis (tests/api/test_schemathesis.py) honest.

`python -m app.openapi` (`make openapi`) prints it as YAML with sorted keys, so the file only changes
when the API does; tests/test_openapi.py fails when the committed file is stale.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

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
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
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


def build(app: FastAPI) -> dict[str, Any]:
    """The adjusted OpenAPI schema of `app`."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
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


def render(schema: dict[str, Any]) -> str:
    """Stable YAML: sorted keys, no `&id001` aliases (repeated objects written out in full, easier to read
    and diff), wide lines (a long description does not re-wrap). PyYAML is imported here only: serving
    the API does not need it."""
    import yaml  # type: ignore[import-untyped]

    class NoAliases(yaml.SafeDumper):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text: str = yaml.dump(schema, Dumper=NoAliases, sort_keys=True, allow_unicode=True, width=120,
                          default_flow_style=False)
    return text


def document() -> str:
    """openapi.yaml as it should be committed (the schema does not depend on the settings)."""
    from app.config import Settings
    from app.main import create_app

    return render(create_app(Settings(_env_file=None)).openapi())  # type: ignore[call-arg]


def main() -> None:
    print(document(), end="")


if __name__ == "__main__":
    main()

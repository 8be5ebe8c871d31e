"""FHIR operations on resource types: `$validate` at the type and instance levels
(https://hl7.org/fhir/R4/resource-operation-validate.html). Thin endpoints: parse the request, call
`app/fhir`, render. The type level is one access: decided once as the operation `validate` on the type
(the policy's OPERATIONS entry) and audited once as that operation with the URL's query, never the body
(which is only checked: nothing is stored). The instance level is decided as the interaction it asks
about (app/interactions/validate_instance.py). Subscription operations live in subscriptions.py; the FHIR router
(app/api/fhir_routes.py) maps them and answers operations it does not serve."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from app.api.deps import json_body, media_type, unit_of_work
from app.api.responses import fhir_response, query_parameter
from app.api.router import IdPath, TypePath
from app.fhir.validation import validate_operation
from app.interactions.preconditions import begin, check_type
from app.interactions.validate_instance import validate_instance

VALIDATE = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
_PROFILE = query_parameter("profile", "canonical URL of a profile to validate against", repeats=True)


def _validate_doc(modes: str, answer: str) -> dict[str, Any]:
    return {
        "tags": ["FHIR operations"],
        "responses": {200: {"description": answer}},
        "openapi_extra": {
            "parameters": [query_parameter("mode", modes, repeats=True), _PROFILE],
            "requestBody": {
                "required": True,
                "description": "The resource to validate, or a Parameters with `resource` (and `mode`, `profile`)",
                "content": {
                    "application/fhir+json": {
                        "schema": {"type": "object", "required": ["resourceType"],
                                   "properties": {"resourceType": {"type": "string"}}}
                    }
                },
            },
        },
    }


VALIDATE_DOC = _validate_doc("create | update | profile", "OperationOutcome: the issues found, or that there are none")
VALIDATE_INSTANCE_DOC = _validate_doc(
    "update | delete | profile", "OperationOutcome: whether the body would be accepted as an update of this resource")


async def validate(resource_type: TypePath, request: Request) -> Response:
    check_type(resource_type)
    body = await json_body(request)
    q = request.query_params
    async with unit_of_work(request) as svc:
        begin(svc.guard, "operation", resource_type,
              query=f"{resource_type}/$validate" + (f"?{request.url.query}" if request.url.query else ""))
        await svc.guard.authorize("operation", resource_type, operation="validate")
        outcome = validate_operation(resource_type, body, q.getlist("mode"), q.getlist("profile"))
        await svc.guard.audited()
    return fhir_response(outcome)


async def validate_instance_operation(resource_type: TypePath, res_id: IdPath, request: Request) -> Response:
    check_type(resource_type)
    mode, profile = request.query_params.getlist("mode"), request.query_params.getlist("profile")
    # `?mode=delete` needs no body (R4: the resource is present unless the mode is delete)
    body = None if "delete" in mode and not media_type(request) else await json_body(request)
    async with unit_of_work(request) as svc:
        outcome = await validate_instance(svc, resource_type, res_id, body, mode, profile)
    return fhir_response(outcome)

"""FHIR operations on resource types: `$validate` at the type and instance levels
(https://hl7.org/fhir/R4/resource-operation-validate.html). Thin routes: parse the request, call
`app/fhir`, render. Subscription operations live in subscriptions.py, unknown ones in unknown_operations.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from app.api.auth import authenticate
from app.api.deps import ContextDep, check_accept, json_body, media_type, unit_of_work
from app.api.interactions import IdPath, TypePath
from app.api.responses import fhir_response
from app.fhir.validation import validate_operation
from app.interactions.capabilities import register_operation
from app.interactions.reads import check_type
from app.interactions.validate_instance import validate_instance

router = APIRouter(
    prefix="/fhir", dependencies=[Depends(check_accept), Depends(authenticate)], tags=["FHIR operations"]
)

register_operation("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate")

_VALIDATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The resource to validate, or a Parameters with `resource` (and `mode`, `profile`)",
        "content": {
            "application/fhir+json": {
                "schema": {"type": "object", "required": ["resourceType"],
                           "properties": {"resourceType": {"type": "string"}}}
            }
        },
    }
}


@router.post("/{resource_type}/$validate", name="validate", openapi_extra=_VALIDATE_BODY,
             responses={200: {"description": "OperationOutcome: the issues found, or that there are none"}})
async def validate(
    resource_type: TypePath,
    request: Request,
    ctx: ContextDep,
    mode: Annotated[list[str] | None, Query(description="create | update | profile")] = None,
    profile: Annotated[list[str] | None, Query(description="canonical URL of a profile to validate against")] = None,
) -> Response:
    check_type(resource_type)
    body = await json_body(request, ctx)
    return fhir_response(validate_operation(resource_type, body, mode or [], profile or []))


@router.post("/{resource_type}/{res_id}/$validate", name="validate_instance", openapi_extra=_VALIDATE_BODY,
             responses={200: {"description": "OperationOutcome: whether the body would be accepted as an update "
                                             "of this resource"}})
async def validate_instance_operation(
    resource_type: TypePath,
    res_id: IdPath,
    request: Request,
    ctx: ContextDep,
    mode: Annotated[list[str] | None, Query(description="update | delete | profile")] = None,
    profile: Annotated[list[str] | None, Query(description="canonical URL of a profile to validate against")] = None,
) -> Response:
    check_type(resource_type)
    # `?mode=delete` needs no body (R4: the resource is present unless the mode is delete)
    body = None if "delete" in (mode or []) and not media_type(request) else await json_body(request, ctx)
    async with unit_of_work(request) as svc:
        outcome = await validate_instance(svc, resource_type, res_id, body, mode or [], profile or [])
    return fhir_response(outcome)

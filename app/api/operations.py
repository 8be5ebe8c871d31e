"""FHIR operations on resource types: `$validate` (https://hl7.org/fhir/R4/resource-operation-validate.html).
Thin routes: parse the request, call `app/fhir`, render. Subscription operations live in subscriptions.py."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from app.api.auth import authenticate
from app.api.deps import ContextDep, check_accept, json_body
from app.api.interactions import TypePath
from app.api.responses import fhir_response
from app.fhir.capabilities import register_operation
from app.fhir.service import check_type
from app.fhir.validation import validate_operation

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

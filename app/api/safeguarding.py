"""Safeguarding operations: `GET /fhir/Patient/{id}/$safeguarding-summary`, the record-banner summary
(contract section 2; built by app/safeguarding/summary.py). Thin route: parse, call, render."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.api.auth import authenticate
from app.api.deps import check_accept, unit_of_work
from app.api.interactions import IdPath
from app.api.responses import fhir_response
from app.interactions.capabilities import register_operation
from app.safeguarding.access import ACCESS_CONTEXT_HEADER, is_scheduled
from app.safeguarding.summary import OPERATION, OPERATION_DEFINITION, safeguarding_summary

router = APIRouter(
    prefix="/fhir", dependencies=[Depends(check_accept), Depends(authenticate)], tags=["FHIR operations"]
)

register_operation(OPERATION, OPERATION_DEFINITION, ("Patient",))


@router.get(
    "/Patient/{res_id}/$safeguarding-summary",
    name="safeguarding_summary",
    responses={
        200: {
            "description": "searchset Bundle: the Patient, active Flags with their authors, open "
            "notifications and acknowledgement Tasks, the last 25 accesses"
        }
    },
)
async def summary(res_id: IdPath, request: Request) -> Response:
    scheduled = is_scheduled(request.headers.get(ACCESS_CONTEXT_HEADER))
    async with unit_of_work(request) as svc:
        bundle = await safeguarding_summary(svc, res_id, scheduled=scheduled)
    return fhir_response(bundle)

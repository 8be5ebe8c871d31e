"""FHIR operations ($validate, and later $status, $events, $get-ws-binding-token,
$safeguarding-summary): thin routes over the service layer."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import check_accept

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)], tags=["FHIR operations"])

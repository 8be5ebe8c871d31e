"""`GET /fhir/$governance-report?month=YYYY-MM[&organization=Organization/x]` (docs/api/referrals.md):
the month's governance figures per provider organisation as a Parameters resource, computed by
`app/safeguarding/report.py` as of the server's clock.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from app.api.deps import context_of, unit_of_work
from app.api.referrals import refuse_unknown
from app.api.responses import fhir_response, query_parameter
from app.errors import BadRequest
from app.safeguarding.referral_rules import organization_param
from app.safeguarding.report import governance_report, month_range, to_parameters
from app.vocabulary import CANONICAL_BASE

GOVERNANCE_REPORT = CANONICAL_BASE + "/OperationDefinition/governance-report"
GOVERNANCE_REPORT_DOC: dict[str, Any] = {"tags": ["governance"], "openapi_extra": {"parameters": [
    query_parameter("month", "YYYY-MM (UTC calendar month)", required=True),
    query_parameter("organization", "Organization/<id>: this organisation only"),
]}}


async def governance_report_operation(request: Request) -> Response:
    ctx = context_of(request)
    month, organization = request.query_params.get("month"), request.query_params.get("organization")
    async with unit_of_work(request) as svc:
        svc.guard.begin("operation", query=f"$governance-report?{request.url.query}")
        await svc.guard.authorize("operation", None, operation="governance-report")
        refuse_unknown(request, ("month", "organization"), "$governance-report")
        for name in ("month", "organization"):
            if len(request.query_params.getlist(name)) > 1:
                raise BadRequest(f"{name} may be given only once", msg_id="SF-0952", expression=name)
        if month is None:
            raise BadRequest("month is required (YYYY-MM)", msg_id="SF-0951", code="required", expression="month")
        month_range(month)
        base = ctx.settings.fhir_base
        org = organization_param(organization, base) if organization is not None else None
        report = await governance_report(svc.session, base, month, org, ctx.clock.now())
        await svc.guard.audited()
    return fhir_response(to_parameters(report))

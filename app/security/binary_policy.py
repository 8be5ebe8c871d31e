"""Binary access follows the DocumentReference named in `Binary.securityContext`
(https://hl7.org/fhir/R4/binary.html#security: "the Binary is treated as having the same security
context as that resource"). A referral copy's Binary is therefore visible exactly when its
DocumentReference is: same reach (organisation, MASH sharing) and same restricted label.
A Binary without a stored securityContext falls back to the policy for Binary itself.

`security_context` loads the DocumentReference, by which `policy.decide(..., context=)` decides a Binary
read; `binary_visibility` is the search filter.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.extract import split_reference
from app.security.decision import SecurityContext
from app.security.policy import Visibility, visibility
from app.security.principal import Principal
from app.storage.tables import resource


async def security_context(session: AsyncSession, binary: dict[str, Any], base: str) -> SecurityContext | None:
    ref = (binary.get("securityContext") or {}).get("reference")
    rtype, rid, _url = split_reference(ref, base) if isinstance(ref, str) else (None, None, None)
    if rtype != "DocumentReference" or not rid:
        return None
    row = (await session.execute(
        select(resource.c.content, resource.c.created_by_org).where(
            resource.c.res_type == "DocumentReference", resource.c.res_id == rid, resource.c.deleted.is_(False))
    )).first()
    return SecurityContext(row[0], row[1]) if row else None


def binary_visibility(
    principal: Principal, binary: dict[str, Any], created_by_org: str | None, context: SecurityContext | None,
    *, interaction: str = "search",
) -> Visibility:
    if context is None:
        return visibility(principal, "Binary", binary, created_by_org, interaction=interaction)
    return visibility(principal, "DocumentReference", context.content, context.created_by_org,
                      interaction=interaction)

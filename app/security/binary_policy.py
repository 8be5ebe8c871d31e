"""Binary access follows the DocumentReference named in `Binary.securityContext`
(https://hl7.org/fhir/R4/binary.html#security: "the Binary is treated as having the same security
context as that resource"). A referral copy's Binary is therefore visible exactly when its
DocumentReference is: same reach (organisation, MASH sharing) and same restricted label.
A Binary without a stored securityContext falls back to the policy for Binary itself.

For the lead to wire into `policy.py` / the read and search paths: `security_context` loads the
DocumentReference, `decide_binary` is `policy.decide` for a Binary read, `binary_visibility` the
search filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.extract import split_reference
from app.security.policy import WITHHELD_MSG, Decision, Visibility, decide, visibility
from app.security.principal import Principal
from app.storage.tables import resource


@dataclass(frozen=True)
class SecurityContext:
    """The stored DocumentReference a Binary takes its access rules from."""

    content: dict[str, Any]
    created_by_org: str | None


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


def decide_binary(
    principal: Principal, interaction: str, binary: dict[str, Any], created_by_org: str | None,
    context: SecurityContext | None,
) -> Decision:
    """`policy.decide` for reading a stored Binary: the type-level checks for Binary (role, scopes), then
    the record-level ones of its DocumentReference."""
    type_level = decide(principal, interaction, "Binary")
    if not type_level.allowed:
        return type_level
    if context is None:
        return decide(principal, interaction, "Binary", binary, created_by_org=created_by_org)
    vis = binary_visibility(principal, binary, created_by_org, context, interaction=interaction)
    if vis is Visibility.HIDDEN:
        return Decision(False, 404, f"Binary outside the reach of role {principal.role}", "SF-0301")
    if vis is Visibility.WITHHELD:
        return Decision(False, 403, "This Binary belongs to a restricted DocumentReference; only safeguarding "
                                    "leads and the organisation that wrote it may see it", WITHHELD_MSG)
    return Decision(True, 200, "allowed")

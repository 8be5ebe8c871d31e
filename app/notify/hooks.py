"""Subscription write hooks: validate, keep the secret out of the stored resource, and keep the
delivery state row in step with the resource (same transaction)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.fhir.hooks import after_write, before_write
from app.notify import lifecycle

if TYPE_CHECKING:
    from app.fhir.service import FhirService
    from app.storage.repository import StoredResource


@before_write("Subscription")
async def prepare_subscription(
    svc: FhirService, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    principal = svc.principal
    # who created it: each delivery is authorised again as this principal (contract section 3)
    owner = principal.to_claims() if principal is not None else None
    content, patch = await lifecycle.prepare(
        svc.session, content, current, base=svc.settings.fhir_base, webhook_allow=svc.settings.webhook_hosts,
        owner=owner,
    )
    scratch["subscription_state"] = patch
    return content


@after_write("Subscription")
async def store_subscription_state(
    svc: FhirService, stored: StoredResource, previous: StoredResource | None, scratch: dict[str, Any]
) -> None:
    patch = scratch.get("subscription_state")
    if patch is not None:
        await lifecycle.apply_state(svc.session, stored.id, patch)

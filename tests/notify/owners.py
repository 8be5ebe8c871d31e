"""Principals for the subscription-ownership tests: a health visiting service's EPR client (the
creator), another client of the same organisation, another organisation's client, people of the same
organisation, and the sexual-health service whose Flags are restricted."""

from __future__ import annotations

from app.context import AppContext
from app.security.tokens import default_scope
from tests.security.tokens_fixture import issuer_for

HV_ORG = "Organization/hv-org"
ELSEWHERE = "Organization/elsewhere"
SH_ORG = "Organization/sh"
SEXUAL_HEALTH_SETTING = "788122004"


def bearer(ctx: AppContext, role: str, sub: str, org: str | None = None, *, scope: str | None = None,
           care_setting: str | None = None) -> dict[str, str]:
    token = issuer_for(ctx).mint(sub=sub, role=role, scope=scope or default_scope(role), ttl=3600, org=org,
                                 care_setting=care_setting)
    return {"Authorization": f"Bearer {token}"}


def owner(ctx: AppContext, **kw: str) -> dict[str, str]:
    """The health visiting service's EPR, which creates the subscriptions."""
    return bearer(ctx, "system", "hv-epr", HV_ORG, **kw)


def intruder(ctx: AppContext, **kw: str) -> dict[str, str]:
    """Another organisation's system client."""
    return bearer(ctx, "system", "intruder", ELSEWHERE, **kw)


def sibling(ctx: AppContext) -> dict[str, str]:
    """Another client of the same organisation."""
    return bearer(ctx, "system", "hv-other-app", HV_ORG)


def health_visitor(ctx: AppContext) -> dict[str, str]:
    return bearer(ctx, "health-visitor", "hv-1", HV_ORG)


def lead(ctx: AppContext) -> dict[str, str]:
    return bearer(ctx, "safeguarding-lead", "lead-1", HV_ORG)


def sexual_health(ctx: AppContext) -> dict[str, str]:
    return bearer(ctx, "sexual-health-clinician", "sh-1", SH_ORG, care_setting=SEXUAL_HEALTH_SETTING)

"""Who hears about a child's ED attendance (docs/api/ed-attendance.md):

the member of the child's active CareTeam whose participant role is `health-visitor` (under 5) or
`school-nurse` (5 up to 18), referenced exactly as the CareTeam references it; else the child's
`Patient.managingOrganization`; else the Organization typed `zero-to-nineteen-duty`; else nobody.
Children are under 18 here, as in FGM-IS; the school nurse covers 5 to 17. A child whose birth date
is not on file goes to the CareTeam's health visitor, else its school nurse. When a role has several
current holders, the latest start wins.

A notice routed to nobody is "unrouted" and carries the reason (UNROUTED_REASONS): it then goes to
the safeguarding lead of the ED's own organisation (`ed_lead`), or to no one (see unrouted.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from app.safeguarding.lookup import Lookup
from app.search.prepared import prepared
from app.stored import StoredResource
from app.vocabulary import CARE_TEAM_ROLE, CareTeamRole, OrganizationRole, UnroutedReason
from app.vocabulary import ORGANIZATION_ROLE as ORG_ROLE

ADULT_AGE = 18


# Why a notice reached no health visitor, school nurse or team; each means the duty team is missing too.
UNROUTED_REASONS = (UnroutedReason.PATIENT_UNKNOWN, UnroutedReason.PATIENT_AMBIGUOUS, UnroutedReason.NO_CARE_TEAM)


@dataclass(frozen=True)
class Route:
    recipient: dict[str, Any] | None
    via: str  # care-team | managing-organization | duty-team | ed-safeguarding-lead | unrouted
    reason: str | None = None  # one of UNROUTED_REASONS when no named recipient or team was found


def age_on(birth: str | None, on: date) -> int | None:
    if not birth or len(birth) < 4:
        return None
    try:
        year = int(birth[:4])
        month = int(birth[5:7]) if len(birth) >= 7 else 1
        day = int(birth[8:10]) if len(birth) >= 10 else 1
    except ValueError:
        return None
    return on.year - year - ((on.month, on.day) < (month, day))


def role_for_age(age: int | None) -> str | None:
    if age is None or age >= ADULT_AGE:
        return None
    return CareTeamRole.HEALTH_VISITOR if age < 5 else CareTeamRole.SCHOOL_NURSE


def _has_role(participant: dict[str, Any], role: str) -> bool:
    for concept in participant.get("role") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == CARE_TEAM_ROLE and coding.get("code") == role:
                return True
    return False


def _current(period: dict[str, Any] | None, on: date) -> bool:
    if not period:
        return True
    start, end = period.get("start"), period.get("end")
    today = on.isoformat()
    return (not start or start[:10] <= today) and (not end or end[:10] >= today)


_ACTIVE_CARE_TEAMS = prepared("CareTeam", [("patient", "Patient/:child"), ("status", "active")])


async def care_team_member(lookup: Lookup, child: StoredResource, role: str, on: date) -> dict[str, Any] | None:
    teams = await _ACTIVE_CARE_TEAMS.run(lookup.session, child=child.id)
    for team in sorted(teams, key=lambda t: t.last_updated, reverse=True):
        if not _current(team.content.get("period"), on):
            continue
        holders = [
            (str((p.get("period") or {}).get("start") or ""), i, p["member"])
            for i, p in enumerate(team.content.get("participant") or [])
            if isinstance(p.get("member"), dict) and _has_role(p, role) and _current(p.get("period"), on)
        ]
        if holders:  # several current holders (a hand-over not yet ended): the one who started last
            member = max(holders, key=lambda h: (h[0], h[1]))[2]
            return {k: v for k, v in member.items() if k in ("reference", "identifier", "type", "display")}
    return None


async def duty_team(lookup: Lookup) -> dict[str, Any] | None:
    duty_type = f"{ORG_ROLE}|{OrganizationRole.ZERO_TO_NINETEEN_DUTY}"
    orgs = await lookup.search("Organization", [("type", duty_type), ("_sort", "_id")], count=1)
    return {"reference": f"Organization/{orgs[0].id}"} if orgs else None


async def lead_of(lookup: Lookup, org: str) -> dict[str, Any] | None:
    """A PractitionerRole coded `safeguarding-lead` in the organisation `org` (the first by id)."""
    query = [("organization", org), ("role", f"{CARE_TEAM_ROLE}|{CareTeamRole.SAFEGUARDING_LEAD}"), ("_sort", "_id")]
    roles = await lookup.search("PractitionerRole", query, count=1)
    return {"reference": f"PractitionerRole/{roles[0].id}"} if roles else None


async def route_child(lookup: Lookup, child: StoredResource | None, on: date, *, ambiguous: bool = False) -> Route:
    """`ambiguous`: the subject's NHS number is held by several Patients (so `child` is None)."""
    if child is not None:
        age = age_on(child.content.get("birthDate"), on)
        # no birth date on file (e.g. a Patient created by the caseload import): the caseload says who
        # the child's practitioner is, whichever of the two roles they hold
        nurses = [CareTeamRole.HEALTH_VISITOR, CareTeamRole.SCHOOL_NURSE]
        for role in [role_for_age(age)] if age is not None else nurses:
            member = await care_team_member(lookup, child, role, on) if role else None
            if member:
                return Route(member, "care-team")
        managing = child.content.get("managingOrganization")
        if isinstance(managing, dict) and managing.get("reference"):
            return Route({"reference": managing["reference"]}, "managing-organization")
    duty = await duty_team(lookup)
    if duty:
        return Route(duty, "duty-team")
    reason = (UnroutedReason.NO_CARE_TEAM if child is not None
              else UnroutedReason.PATIENT_AMBIGUOUS if ambiguous else UnroutedReason.PATIENT_UNKNOWN)
    return Route(None, "unrouted", reason)

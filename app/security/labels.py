"""Security labels (https://hl7.org/fhir/R4/security-labels.html) as SafeFlag uses them (docs/api/security.md).

- Restricted: `meta.security` R or V from `v3-Confidentiality`. Such records are visible only to
  the safeguarding lead, admin, and users of the authoring organisation (policy.py decides).
- Sexual-health writers (role `sexual-health-clinician`, or any token whose `care_setting` is SNOMED CT
  788122004 "sexual health service") get R plus `SEX` (`v3-ActCode`) on what they write, unless the
  resource already carries a confidentiality code (then theirs stands) or SEX.
- An AuditEvent about a restricted record (it names one, a search or history showed one, or a read was
  refused because of one) is labelled R itself and kept as written by the record's organisation, so
  that the same readers may see it: safeguarding leads, admins and that organisation. So is every
  AuditEvent of a sexual-health writer's access, whose own organisation stands as its writer: which
  children a sexual-health service looks up is the same secret (`audit_restriction`).
- The search information entry says that restricted records about the search's patients were withheld and
  whom to ask; no number, and nothing that the search's other criteria change (search_scope.withholds).
  It never names the authoring organisation: "a sexual-health clinic holds something on this child" is
  itself the secret.
"""

from __future__ import annotations

import copy
from typing import Any

from app.errors import Issue
from app.security.principal import Principal
from app.vocabulary import ACT_CODE, CONFIDENTIALITY, UserRole

RESTRICTED_CODES = frozenset({"R", "V"})
SEXUAL_HEALTH_SETTING = "788122004"

RESTRICTED = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}
SEX = {"system": ACT_CODE, "code": "SEX", "display": "sexuality and reproductive health information sensitivity"}


def security_labels(resource: dict[str, Any] | None) -> list[dict[str, Any]]:
    meta = (resource or {}).get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    return [c for c in labels if isinstance(c, dict)] if isinstance(labels, list) else []


def is_restricted(resource: dict[str, Any] | None) -> bool:
    return any(
        c.get("system") == CONFIDENTIALITY and c.get("code") in RESTRICTED_CODES for c in security_labels(resource)
    )


def writes_sexual_health(principal: Principal) -> bool:
    return principal.role == UserRole.SEXUAL_HEALTH_CLINICIAN or principal.care_setting == SEXUAL_HEALTH_SETTING


def default_labels(principal: Principal, resource: dict[str, Any]) -> dict[str, Any]:
    """The resource to store: a copy with R + SEX added for sexual-health writers, else `resource` itself."""
    if not writes_sexual_health(principal):
        return resource
    labels = security_labels(resource)
    add = []
    if not any(c.get("system") == CONFIDENTIALITY for c in labels):
        add.append(dict(RESTRICTED))
    if not any(c.get("system") == ACT_CODE and c.get("code") == "SEX" for c in labels):
        add.append(dict(SEX))
    if not add:
        return resource
    out = copy.copy(resource)
    meta = dict(out.get("meta") or {})
    meta["security"] = [*(meta.get("security") or []), *add]
    out["meta"] = meta
    return out


def audit_restriction(principal: Principal | None, records: set[str | None] | None) -> tuple[bool, str | None]:
    """(restricted, organisation) of an access's AuditEvent: `records` holds the organisations that wrote
    the restricted records the access touched (None: it touched none; a None inside: a record no
    organisation's token wrote). The AuditEvent's organisation is the one writer when there is one, else
    None, which leaves it to safeguarding leads and admins."""
    orgs = set(records or ())
    if principal is not None and writes_sexual_health(principal):
        orgs.add(principal.org)
    elif records is None:
        return False, None
    return True, (next(iter(orgs)) if len(orgs) == 1 else None)


def withheld_issue() -> Issue:
    """The information entry of a searchset from which restricted records about its patients were withheld."""
    return Issue(
        "suppressed",
        "Restricted records about the patient(s) of this search were withheld from this result. Restricted "
        "records are visible only to safeguarding leads and to the organisation that wrote them; ask your "
        "safeguarding lead if you need to know what they hold",
        severity="information",
        msg_id="SF-0820",
    )

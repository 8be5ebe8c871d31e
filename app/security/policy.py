"""Access policy: THE one place that decides who may do what to which resource (docs/api/security.md).
The engine asks `decide` once per interaction (`Guard.authorize`); each rule below is stated once.

A decision combines, in this order:
  1. what nobody may do (`refuse_interaction`, 405): the NEVER_DELETED types, the SERVER_WRITTEN ones,
     any write of the server's own conformance resources (CONFORMANCE_TYPES, read-only);
  2. the role's table below (type level: 403 when the role may not do this to the type at all);
  3. the token's SMART scopes, which only ever narrow the role (403, `insufficient_scope`);
  4. the record: whether it is within the role's reach and whether its security label hides it;
  5. for writes: whether the stored record may be changed by this role, and content conditions
     (MASH writes plan-type Flags and referral-outcome Communications only, and so on).

A record outside the role's reach answers 404, exactly as if it did not exist, and search never shows
or counts it. A restricted (R/V) record inside the reach answers 403, and search counts it as withheld.
A type the role may not touch at all answers 403 for every id, existing or not, so it reveals nothing.

"Their own" Subscription (`Reach.CREATOR`): created by a token of the same organisation and client
(`sub`), as `creator_tag` records; anyone else gets 404 for it, and only `admin` manages every one.
"Of an organisation": created by a token of that organisation (`resource.created_by_org`), or naming
the organisation, or one of its Practitioners/PractitionerRoles (`Principal.org_refs`, filled by
`affiliation.enrich`), as recipient, sender, owner, author, custodian or serviceProvider. "Their team"
is the organisation of the user's PractitionerRole, which is the token's `org`. Security labels are
honoured on every resource type: a restricted label means the same wherever it is.

The SQL twin of `visibility` (for search) is `search_scope.py`; a test holds them equal on both databases.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from app.fhir.conformance import CONFORMANCE_TYPES
from app.fhir.search.definitions import params_for, reference_values
from app.fhir.search.extract import tokens
from app.security.decision import ALLOW, Decision, SecurityContext
from app.security.labels import is_restricted
from app.security.principal import ROLES, Principal
from app.security.scopes import letter_of
from app.vocabulary import (
    CODE_SYSTEM,
    COMMUNICATION_CATEGORY,
    FLAG_CATEGORY,
    PLAN_CATEGORIES,
    TASK_CODE,
    CommunicationCategory,
    TaskCode,
    UserRole,
)

NEVER_DELETED = frozenset({"Flag", "DocumentReference", "Binary", "AuditEvent"})
SERVER_WRITTEN = frozenset({"AuditEvent"})
KEPT_BY_CREATOR = frozenset({"Subscription"})  # a deleted one brought back stays its creator's (`Reach.CREATOR`)
CLEARED_ROLES = frozenset({UserRole.SAFEGUARDING_LEAD, UserRole.ADMIN})  # may see restricted records of any org
WITHHELD_MSG = "SF-0802"  # the refusal of a record withheld for its restricted label (403)


class Reach(Enum):
    """Which records of a type a role may touch."""

    NONE = "-"
    ALL = "all"  # every record
    ORG = "org"  # records of the principal's organisation
    ADDRESSED = "addressed"  # Communications addressed to the org or its people, or written by the org
    SHARED = "shared"  # DocumentReference/Binary that Communications addressed to the org point to
    OWNED = "owned"  # Tasks owned by the user or their team
    CREATOR = "creator"  # Subscriptions created by the principal's organisation and client (`creator_tag`)


# One-letter names keep the tables below readable as a matrix.
_, A, O, ADR, SHR, OWN = Reach.NONE, Reach.ALL, Reach.ORG, Reach.ADDRESSED, Reach.SHARED, Reach.OWNED  # noqa: E741
CRT = Reach.CREATOR

# Columns are ROLES: ed-clinician, health-visitor, school-nurse, sexual-health-clinician,
#                    safeguarding-lead, mash-practitioner, system, admin.
# fmt: off
READ: dict[str, tuple[Reach, ...]] = {  # read, vread, history, search
    #                   ed   hv   sn   sh  lead  mash  sys  admin
    "Patient":          (A,   A,   A,   A,   A,   A,   A,   A),
    "Practitioner":     (A,   A,   A,   A,   A,   _,   A,   A),
    "PractitionerRole": (A,   A,   A,   A,   A,   _,   A,   A),
    "Organization":     (A,   A,   A,   A,   A,   A,   A,   A),
    "CareTeam":         (A,   A,   A,   A,   A,   _,   A,   A),
    "RelatedPerson":    (A,   A,   A,   A,   A,   _,   A,   A),
    "Encounter":        (O,   O,   O,   O,   A,   _,   A,   A),
    "Flag":             (A,   A,   A,   A,   A,   A,   A,   A),
    "Communication":    (O,   O,   O,   O,   A,  ADR,  O,   A),
    "DocumentReference": (O,  O,   O,   O,   A,  SHR,  O,   A),
    "Binary":           (O,   O,   O,   O,   A,  SHR,  O,   A),
    "Task":             (O,   O,   O,   O,   A,   _,   O,   A),
    "Subscription":     (_,   _,   _,   _,   _,   _,  CRT,  A),
    "AuditEvent":       (_,   _,   _,   _,   A,   _,   A,   A),
}

# create: None = denied, "" = allowed, "<condition>" = allowed when the new content meets it
CREATE: dict[str, tuple[str | None, ...]] = {
    #                   ed    hv    sn    sh    lead            mash                sys  admin
    "Patient":          (None, None, None, None, None,           None,               "", ""),
    "Practitioner":     (None, None, None, None, None,           None,               "", ""),
    "PractitionerRole": (None, None, None, None, None,           None,               "", ""),
    "Organization":     (None, None, None, None, None,           None,               "", ""),
    "CareTeam":         (None, None, None, None, None,           None,               "", ""),
    "RelatedPerson":    ("",   "",   "",   "",   "",             None,               "", ""),
    "Encounter":        ("",   "",   "",   "",   "",             None,               "", ""),
    "Flag":             ("",   "",   "",   "",   "",             "plan-type",        "", ""),
    "Communication":    ("",   "",   "",   "",   "",             "outcome-category", "", ""),
    "DocumentReference": ("",  "",   "",   "",   "",             None,               "", ""),
    "Binary":           ("",   "",   "",   "",   "",             None,               "", ""),
    "Task":             (None, None, None, None, "qa-task-code", None,               "", ""),
    "Subscription":     (None, None, None, None, None,           None,               "", ""),
    "AuditEvent":       (None, None, None, None, None,           None,               None, None),
}

# update / patch: the stored records that may be changed, and the condition on the change
UPDATE: dict[str, tuple[tuple[Reach, str], ...]] = {
    #                   ed        hv                 sn                 sh        lead      mash                        sys       admin
    "Patient":          ((_, ""), (_, ""),           (_, ""),           (_, ""),  (_, ""),  (_, ""),                    (A, ""),  (A, "")),
    "Practitioner":     ((_, ""), (_, ""),           (_, ""),           (_, ""),  (_, ""),  (_, ""),                    (A, ""),  (A, "")),
    "PractitionerRole": ((_, ""), (_, ""),           (_, ""),           (_, ""),  (_, ""),  (_, ""),                    (A, ""),  (A, "")),
    "Organization":     ((_, ""), (_, ""),           (_, ""),           (_, ""),  (_, ""),  (_, ""),                    (A, ""),  (A, "")),
    "CareTeam":         ((_, ""), (_, ""),           (_, ""),           (_, ""),  (_, ""),  (_, ""),                    (A, ""),  (A, "")),
    "RelatedPerson":    ((O, ""), (O, ""),           (O, ""),           (O, ""),  (O, ""),  (_, ""),                    (A, ""),  (A, "")),
    "Encounter":        ((O, ""), (O, ""),           (O, ""),           (O, ""),  (O, ""),  (_, ""),                    (A, ""),  (A, "")),
    "Flag":             ((O, ""), (O, ""),           (O, ""),           (O, ""),  (O, ""),  (O, "plan-type"),           (A, ""),  (A, "")),
    "Communication":    ((O, ""), (O, ""),           (O, ""),           (O, ""),  (O, ""),  (ADR, "outcome-category"),  (O, ""),  (A, "")),
    "DocumentReference": ((O, ""), (O, ""),          (O, ""),           (O, ""),  (O, ""),  (_, ""),                    (O, ""),  (A, "")),
    "Binary":           ((O, ""), (O, ""),           (O, ""),           (O, ""),  (O, ""),  (_, ""),                    (O, ""),  (A, "")),
    "Task":             ((_, ""), (OWN, "status"),   (OWN, "status"),   (_, ""),  (O, ""),  (_, ""),                    (O, ""),  (A, "")),
    "Subscription":     ((_, ""), (_, ""),           (_, ""),           (_, ""),  (_, ""),  (_, ""),                    (CRT, ""), (A, "")),
    "AuditEvent":       ((_, ""), (_, ""),           (_, ""),           (_, ""),  (_, ""),  (_, ""),                    (_, ""),  (_, "")),
}

DELETE: tuple[Reach, ...] = (_, _, _, _, _, _, _, A)  # only admin; NEVER_DELETED types are 405 first
DELETE_OF_TYPE: dict[str, tuple[Reach, ...]] = {"Subscription": (_, _, _, _, _, _, CRT, A)}  # a client its own
# fmt: on

# Elements that name "the organisation" of a record, as search parameter names (their index rows
# serve search_scope.py, their extractors serve this module: one definition for both).
ORG_FIELDS: dict[str, tuple[str, ...]] = {
    "Communication": ("recipient", "sender"),
    "Task": ("owner",),
    "DocumentReference": ("author", "custodian"),
    "Encounter": ("service-provider",),
    "Flag": ("author",),
}
REACH_FIELDS = {Reach.ADDRESSED: ("recipient",), Reach.OWNED: ("owner",)}

CREATOR_SYSTEM = CODE_SYSTEM + "created-by-client"  # meta.tag of a Subscription: the `sub` of its creator
PLAN_TYPES = PLAN_CATEGORIES
TASK_STATUS_ELEMENTS = frozenset({"status", "statusReason", "businessStatus", "lastModified", "executionPeriod"})
# may pass a Task to a colleague (`_handover`)
HANDOVER_ROLES = frozenset({UserRole.HEALTH_VISITOR, UserRole.SCHOOL_NURSE})
_ACTIONS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


class Visibility(Enum):
    VISIBLE = "visible"
    WITHHELD = "withheld"  # restricted label: counted in the search information entry, 403 on read
    HIDDEN = "hidden"  # outside the role's reach: never shown, never counted, 404 on read


def _col(principal: Principal) -> int:
    return ROLES.index(principal.role)


def _refs(resource_type: str, fields: tuple[str, ...], content: dict[str, Any], base: str) -> set[str]:
    defs = params_for(resource_type)
    out = set()
    for name in fields:
        for rtype, rid, _url, _s, _v in reference_values(defs[name], content, base):
            if rtype and rid:
                out.add(f"{rtype}/{rid}")
    return out


def in_reach(
    principal: Principal, reach: Reach, resource_type: str, content: dict[str, Any], created_by_org: str | None
) -> bool:
    if reach is Reach.ALL:
        return True
    if reach is Reach.NONE:
        return False
    if reach is Reach.CREATOR:
        return is_creator(principal, content, created_by_org)
    own_org = principal.org is not None and created_by_org == principal.org
    if reach is Reach.SHARED:
        return f"{resource_type}/{content.get('id')}" in principal.shared_refs
    fields = REACH_FIELDS.get(reach) if reach is not Reach.ORG else ORG_FIELDS.get(resource_type, ())
    if reach is Reach.OWNED:
        own_org = False  # "they or their team own": the owner element only
    return own_org or bool(_refs(resource_type, fields or (), content, principal.base) & principal.agent_refs)


def creator_tag(principal: Principal) -> dict[str, str]:
    """The tag that makes a new Subscription the principal's (with `resource.created_by_org`)."""
    return {"system": CREATOR_SYSTEM, "code": principal.sub}


def creator_of(content: dict[str, Any]) -> str | None:
    """The client (token `sub`) that created a Subscription, from its `creator_tag`."""
    for tag in (content.get("meta") or {}).get("tag") or []:
        if isinstance(tag, dict) and tag.get("system") == CREATOR_SYSTEM:
            return tag.get("code") if isinstance(tag.get("code"), str) else None
    return None


def is_creator(principal: Principal, content: dict[str, Any], created_by_org: str | None) -> bool:
    """Created by this principal's organisation and client: a Subscription is theirs alone."""
    return created_by_org == principal.org and creator_of(content) == principal.sub


def cleared(principal: Principal, created_by_org: str | None) -> bool:
    """May see restricted (R/V) records written by `created_by_org`."""
    return principal.role in CLEARED_ROLES or (principal.org is not None and created_by_org == principal.org)


def visibility(
    principal: Principal, resource_type: str, content: dict[str, Any], created_by_org: str | None = None,
    *, interaction: str = "search",
) -> Visibility:
    """How a stored record appears to the principal in a read (`interaction="read"`) or a search."""
    reach = READ[resource_type][_col(principal)]
    if not in_reach(principal, reach, resource_type, content, created_by_org):
        return Visibility.HIDDEN
    if not principal.scopes.allows(interaction, resource_type, content, context=principal.context):
        return Visibility.HIDDEN  # a qualified scope narrows the result set like an added parameter
    if is_restricted(content) and not cleared(principal, created_by_org):
        return Visibility.WITHHELD
    return Visibility.VISIBLE


def conflict_sight(
    principal: Principal, resource_type: str, content: dict[str, Any], created_by_org: str | None = None
) -> Visibility:
    """How a stored record that blocks the principal's write (a duplicate Flag) may show in the refusal.
    WITHHELD: its restricted label keeps it from the principal, whatever the scopes; it must not even
    conflict, since a 409 instead of a 201 would betray it. VISIBLE: the principal could find it by a
    search (as a conditional create does), so the refusal names it. HIDDEN: the role or scopes do not
    let the principal find it (`system/Flag.c` only): the write is still refused, without naming the
    record, its author or its content."""
    if is_restricted(content) and not cleared(principal, created_by_org):
        return Visibility.WITHHELD
    return visibility(principal, resource_type, content, created_by_org)


def _codes(values: Any) -> set[tuple[str | None, str | None]]:
    items = values if isinstance(values, list) else [values]
    return {t for v in items for t in tokens(v)} if values else set()


def _condition(name: str, content: dict[str, Any] | None, current: dict[str, Any] | None) -> str | None:
    """None when `content` (and the change from `current`) meets the condition, else why not."""
    content = content or {}
    if name == "plan-type":
        cats = _codes(content.get("category"))
        if not any(s == FLAG_CATEGORY and c in PLAN_TYPES for s, c in cats):
            return "MASH practitioners may write only plan-type Flags (" + ", ".join(sorted(PLAN_TYPES)) + ")"
    elif name == "outcome-category":
        cats = _codes(content.get("category"))
        if (COMMUNICATION_CATEGORY, CommunicationCategory.REFERRAL_OUTCOME) not in cats:
            return "MASH practitioners may write only referral-outcome Communications"
    elif name == "qa-task-code":
        if (TASK_CODE, TaskCode.REFERRAL_QA) not in _codes(content.get("code")):
            return "safeguarding leads may create only referral-qa Tasks"
    elif name == "status" and current is not None:
        keys = (set(content) | set(current)) - {"id", "meta", "text", "owner"} - TASK_STATUS_ELEMENTS
        if any(content.get(k) != current.get(k) for k in keys):
            return ("this role may change only the status of a Task (" + ", ".join(sorted(TASK_STATUS_ELEMENTS))
                    + ") and pass it to a colleague of their team (owner)")
    return None


def _handover(principal: Principal, content: dict[str, Any], current: dict[str, Any]) -> Decision | None:
    """Passing a notice to a colleague: a health visitor or school nurse may change a Task's owner (one
    she or her team owns, checked before) only to a PractitionerRole or Practitioner of her own
    organisation (`Principal.org_refs`, the team the routing uses). None: no change of owner, or an allowed one."""
    if content.get("owner") == current.get("owner"):
        return None
    owner = content.get("owner")
    new = _refs("Task", ("owner",), content, principal.base) if isinstance(owner, dict) else set()
    if len(new) == 1 and next(iter(new)).partition("/")[0] in ("PractitionerRole", "Practitioner") \
            and new <= principal.org_refs:
        return None
    return _deny(403, "A Task may be passed only to a colleague of your own team (a PractitionerRole of "
                      f"{principal.org or 'your organisation'})", "SF-0806", expression="Task.owner")


def _deny(status: int, reason: str, msg_id: str, *, scope: bool = False, expression: str | None = None,
          allow: str | None = None) -> Decision:
    return Decision(False, status, reason, msg_id, scope, expression, allow)


def decide(
    principal: Principal,
    interaction: str,
    resource_type: str | None,
    resource: dict[str, Any] | None = None,
    *,
    current: dict[str, Any] | None = None,
    created_by_org: str | None = None,
    creates: bool = False,
    criteria: bool = False,
    context: SecurityContext | None = None,
    operation: str | None = None,
) -> Decision:
    """THE policy's one question, asked once per interaction (`Guard.authorize`): may `principal` perform
    `interaction` (a FHIR interaction or c/r/u/d/s) on this type/record? `resource`: the stored record
    (read, vread, history, delete), the incoming content (create; `creates`: an update that creates, with
    `current` a deleted record it brings back) or the new content (update, patch; `current` the stored
    record: a patch is first judged unchanged, so a record the writer may not change answers before its
    result). None, and no `current`: the type alone (search: filter with `visibility`). `criteria`: a
    conditional write's, a search of the type. `context`: a Binary's DocumentReference (binary_policy.py).
    `operation`: an operation or endpoint (OPERATIONS), on the record `resource` if any. `created_by_org`
    is the stored record's `resource.created_by_org`.
    """
    if operation is not None:
        allowed = decide_operation(principal, operation)
        if allowed.allowed and resource_type is not None:  # who may use it; then: what nobody may do
            allowed = refuse_interaction(resource_type, interaction) or allowed
        if not allowed.allowed or resource_type is None or resource is None:
            return allowed
    assert resource_type is not None
    action = "create" if creates else _ACTIONS[letter_of(interaction)]
    refused = refuse_interaction(resource_type, interaction if len(interaction) > 1 else action)
    if refused is not None:
        return refused
    if criteria and not (searched := decide(principal, "search", resource_type)).allowed:
        return searched
    if interaction == "patch" and current is not None and resource is not current:
        unchanged = decide(principal, "patch", resource_type, current, current=current, created_by_org=created_by_org)
        if not unchanged.allowed:
            return unchanged
    revived, current = (current, None) if creates else (None, current)
    if resource_type not in READ:
        return _deny(403, f"{resource_type} is not a resource type this server grants access to", "SF-0800")
    col = _col(principal)
    stored = current if action == "update" else (resource if action != "create" else None)
    granted = {"read": READ[resource_type][col], "search": READ[resource_type][col], "update": UPDATE[resource_type][col][0],
               "create": _ if CREATE[resource_type][col] is None else A,
               "delete": DELETE_OF_TYPE.get(resource_type, DELETE)[col]}[action]
    if granted is Reach.NONE:
        return _deny(403, f"Role {principal.role} may not {action} {resource_type} resources", "SF-0800")
    ctx = principal.context
    scoped = (resource, current) if action == "update" else ((None,) if context is not None else (resource,))
    for content in scoped:
        if not principal.scopes.allows(action, resource_type, content, context=ctx):
            return _deny(403, f"The token's scopes do not allow {action} of {resource_type}"
                              + (" resources like this one" if content is not None else ""), "SF-0801", scope=True)
    if stored is not None:
        seen = ("DocumentReference", context.content, context.created_by_org) if context is not None else (
            resource_type, stored, created_by_org)
        vis = visibility(principal, *seen, interaction=action)
        if vis is Visibility.HIDDEN:
            return _deny(404, f"{resource_type} outside the reach of role {principal.role}", "SF-0301")
        if vis is Visibility.WITHHELD:
            what = f"This {resource_type} is restricted" if context is None else (
                "This Binary belongs to a restricted DocumentReference")
            return _deny(403, f"{what}; only safeguarding leads and the organisation that wrote it may see it",
                         WITHHELD_MSG)
    condition = ""
    if action == "create":
        condition = CREATE[resource_type][col] or ""
    elif action == "update" and current is not None:
        reach, condition = UPDATE[resource_type][col]
        if not in_reach(principal, reach, resource_type, current, created_by_org):
            return _deny(403, f"Role {principal.role} may change only {resource_type} resources of their "
                              f"own organisation" + (" that they or their team own" if reach is OWN else ""), "SF-0803")
    elif action == "update":
        condition = UPDATE[resource_type][col][1]
    if condition and resource is not None:  # content conditions need content: none in a type-level check
        why = _condition(condition, resource, current)
        if why is None and condition != "status" and current is not None:
            why = _condition(condition, current, None)  # the stored record must meet it too
        if why:
            return _deny(403, why, "SF-0804")
        if condition == "status" and current is not None and principal.role in HANDOVER_ROLES:
            return _handover(principal, resource, current) or ALLOW
    if revived is not None and resource_type in KEPT_BY_CREATOR:  # bringing it back is a change of it too
        return decide(principal, "update", resource_type, resource, current=revived, created_by_org=created_by_org)
    return ALLOW


# Operations and endpoints that are not a FHIR interaction on one type. The data an operation reads
# or writes is still decided by `decide`/`visibility` record by record.
OPERATIONS: dict[str, frozenset[str]] = {
    "metrics": frozenset({UserRole.ADMIN, UserRole.SYSTEM_CLIENT}),  # GET /metrics: not an open endpoint
    "governance-report": frozenset({UserRole.SAFEGUARDING_LEAD, UserRole.ADMIN}),  # $governance-report, safeflag report
    "validate": frozenset(ROLES),  # $validate reads and writes nothing
    "batch": frozenset(ROLES),  # POST /fhir: each entry is decided as if sent alone
    "transaction": frozenset(ROLES),
    # reads Flags, Communications, AuditEvents
    "safeguarding-summary": frozenset(ROLES) - {UserRole.MASH_PRACTITIONER},
    "history-system": frozenset(ROLES),  # each version is filtered as a search's results are
    "conformance": frozenset(ROLES),  # the server's own conformance resources (fhir_profiles/) describe the API
}


def decide_operation(principal: Principal, name: str) -> Decision:
    """May the principal call this operation or endpoint at all?"""
    if principal.role in OPERATIONS.get(name, frozenset()):
        return ALLOW
    return _deny(403, f"Role {principal.role} may not use {name}", "SF-0805")


def refuse_interaction(resource_type: str, interaction: str) -> Decision | None:
    """405 for an interaction no one may perform on this resource type, whoever asks (the server's own
    work included): the types never deleted, those written by the server only, and the server's own
    conformance resources (fhir_profiles/: a change to them is a change to the code). None: not refused."""
    if interaction == "delete" and resource_type in NEVER_DELETED:
        return _deny(405, f"{resource_type} resources are never deleted; change their status instead", "SF-0405")
    if interaction in ("create", "update", "patch") and resource_type in SERVER_WRITTEN:
        done = "patched" if interaction == "patch" else f"{interaction}d"
        return _deny(405, f"{resource_type} is written by the server only; it cannot be {done} through the API",
                     "SF-0406")
    if interaction in ("create", "update", "patch", "delete") and resource_type in CONFORMANCE_TYPES:
        return _deny(405, f"{resource_type} resources are the server's own conformance resources (fhir_profiles/) "
                          "and are read-only: read and search them", "SF-0250", allow="GET")
    return None

"""Policy rules beyond the matrix: content conditions, scopes narrowing roles, default labels, the
withheld entry, and the errors a client sees."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import Forbidden, MethodNotAllowed, NotFound
from app.security.labels import ACT_CODE, CONFIDENTIALITY, default_labels, withheld_issue
from app.security.policy import Visibility, decide, refuse_interaction, visibility
from app.security.principal import Principal
from app.security.scopes import ScopeSet

CS = "https://fhir.safeflag.example/CodeSystem/"
OWN = "Organization/own"


def who(role: str, scope: str | None = None, **kw: Any) -> Principal:
    scope = scope or ("system/*.cruds" if role == "system" else "user/*.cruds")
    kw.setdefault("org", OWN)
    refs = {"org_refs": frozenset({kw["org"]}) if kw["org"] else frozenset()}
    if kw.get("fhir_user"):
        refs["own_refs"] = frozenset({kw["fhir_user"]})
    return Principal(sub="u", role=role, scopes=ScopeSet.parse(scope), issuer="t", **kw, **refs)


def flag(category: str, author: str = OWN) -> dict[str, Any]:
    return {"resourceType": "Flag", "id": "f", "status": "active", "author": {"reference": author},
            "category": [{"coding": [{"system": CS + "safeguarding-flag-category", "code": category}]}]}


def comm(category: str, recipient: str = OWN) -> dict[str, Any]:
    return {"resourceType": "Communication", "id": "c", "status": "completed", "recipient": [{"reference": recipient}],
            "category": [{"coding": [{"system": CS + "safeguarding-communication-category", "code": category}]}]}


def task(owner: str, code: str = "acknowledge", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "id": "t", "status": "requested", "intent": "order", "owner": {"reference": owner},
            "code": {"coding": [{"system": CS + "safeguarding-task", "code": code}]}, **extra}


@pytest.mark.parametrize("category, ok", [
    ("child-protection-plan", True), ("looked-after-child", True), ("unborn-child-protection-plan", True),
    ("fgm", False), ("exploitation-risk", False),
])
def test_mash_writes_plan_type_flags_only(category: str, ok: bool) -> None:
    d = decide(who("mash-practitioner", org="Organization/la"), "create", "Flag", flag(category, "Organization/la"))
    assert d.allowed is ok
    if not ok:
        assert (d.status, d.msg_id) == (403, "SF-0804")
        assert d.reason == ("MASH practitioners may write only plan-type Flags (child-protection-plan, "
                            "looked-after-child, unborn-child-protection-plan)")


def test_mash_may_not_turn_a_plan_flag_into_another_category() -> None:
    mash = who("mash-practitioner", org="Organization/la")
    cur = flag("child-protection-plan", "Organization/la")
    assert decide(mash, "update", "Flag", {**cur, "status": "inactive"}, current=cur, created_by_org="Organization/la").allowed
    changed = decide(mash, "update", "Flag", flag("fgm", "Organization/la"), current=cur, created_by_org="Organization/la")
    assert (changed.allowed, changed.status) == (False, 403)


def test_mash_communications() -> None:
    mash = who("mash-practitioner", org="Organization/la")
    assert decide(mash, "create", "Communication", comm("referral-outcome", "Organization/hv")).allowed
    refused = decide(mash, "create", "Communication", comm("mash-referral", "Organization/hv"))
    assert (refused.status, refused.reason) == (403, "MASH practitioners may write only referral-outcome Communications")
    # the referral addressed to the MASH is readable, but not changeable by it
    referral = comm("mash-referral", "Organization/la")
    assert decide(mash, "read", "Communication", referral, created_by_org="Organization/hv").allowed
    edit = decide(mash, "update", "Communication", {**referral, "status": "stopped"}, current=referral,
                  created_by_org="Organization/hv")
    assert (edit.allowed, edit.status) == (False, 403)


def test_mash_documents_only_when_shared() -> None:
    doc = {"resourceType": "DocumentReference", "id": "d1", "status": "current"}
    mash = who("mash-practitioner", org="Organization/la")
    assert decide(mash, "read", "DocumentReference", doc, created_by_org="Organization/hv").status == 404
    shared = mash.with_refs(shared_refs=frozenset({"DocumentReference/d1"}))
    assert decide(shared, "read", "DocumentReference", doc, created_by_org="Organization/hv").allowed


def test_health_visitor_changes_only_the_status_of_tasks_their_team_owns() -> None:
    hv = who("health-visitor", fhir_user="PractitionerRole/hv-1")
    mine = task("PractitionerRole/hv-1")
    assert decide(hv, "update", "Task", {**mine, "status": "completed"}, current=mine).allowed
    teams = task(OWN)
    assert decide(hv, "update", "Task", {**teams, "status": "completed", "businessStatus": {"text": "seen"}},
                  current=teams, created_by_org="Organization/ed").allowed
    reassign = decide(hv, "update", "Task", {**mine, "owner": {"reference": "Organization/x"}}, current=mine)
    assert (reassign.status, reassign.msg_id, reassign.expression) == (403, "SF-0806", "Task.owner")
    edit = decide(hv, "update", "Task", {**mine, "priority": "urgent"}, current=mine)
    assert (edit.status, edit.msg_id) == (403, "SF-0804")
    assert edit.reason == ("this role may change only the status of a Task (businessStatus, executionPeriod, "
                           "lastModified, status, statusReason) and pass it to a colleague of their team (owner)")
    # created by the team's organisation but owned by another team: readable, not theirs to change
    other = task("Organization/zero19-north")
    d = decide(hv, "update", "Task", {**other, "status": "completed"}, current=other, created_by_org=OWN)
    assert (d.status, d.msg_id, d.reason) == (
        403, "SF-0803", ("Role health-visitor may change only Task resources of their own organisation that "
                         "they or their team own"))


def test_lead_creates_referral_qa_tasks_and_reassigns() -> None:
    lead = who("safeguarding-lead")
    assert decide(lead, "create", "Task", task(OWN, "referral-qa")).allowed
    d = decide(lead, "create", "Task", task(OWN, "acknowledge"))
    assert (d.status, d.reason) == (403, "safeguarding leads may create only referral-qa Tasks")
    cur = task(OWN)
    assert decide(lead, "update", "Task", {**cur, "owner": {"reference": "PractitionerRole/lead"}}, current=cur).allowed


def test_scopes_narrow_never_widen() -> None:
    narrow = who("ed-clinician", "user/Flag.rs")
    assert decide(narrow, "read", "Flag", flag("fgm")).allowed
    d = decide(narrow, "create", "Flag", flag("fgm"))
    assert (d.status, d.msg_id, d.insufficient_scope) == (403, "SF-0801", True)
    err = d.error("Flag")
    assert isinstance(err, Forbidden) and err.headers == {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
    assert err.outcome() == {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "forbidden",
        "diagnostics": "SF-0801: The token's scopes do not allow create of Flag resources like this one"}]}
    # a wide scope does not let a MASH practitioner read Encounters
    mash = who("mash-practitioner", "user/*.cruds")
    assert decide(mash, "read", "Encounter").status == 403
    # user/ scopes do nothing for a system client, system/ scopes nothing for a user
    assert decide(who("system", "user/*.cruds"), "read", "Patient").status == 403
    assert decide(who("admin", "system/*.cruds"), "read", "Patient").status == 403


def test_qualified_scope_filters_like_a_search_parameter() -> None:
    fgm_only = who("ed-clinician", f"user/Flag.rs?category={CS}safeguarding-flag-category|fgm")
    assert decide(fgm_only, "search", "Flag").allowed
    assert visibility(fgm_only, "Flag", flag("fgm")) is Visibility.VISIBLE
    assert visibility(fgm_only, "Flag", flag("child-protection-plan")) is Visibility.HIDDEN
    d = decide(fgm_only, "read", "Flag", flag("child-protection-plan"))
    assert (d.status, d.msg_id) == (403, "SF-0801")


def test_errors_clients_see() -> None:
    hidden = decide(who("ed-clinician"), "read", "Encounter", {"resourceType": "Encounter", "id": "e9"},
                    created_by_org="Organization/elsewhere")
    err = hidden.error("Encounter", "e9")
    assert isinstance(err, NotFound)
    # worded exactly like a record that does not exist, so existence does not leak
    assert err.outcome() == {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "not-found", "diagnostics": "SF-0301: Encounter/e9 is not known",
        "expression": ["id"]}]}
    restricted = {**flag("fgm", "Organization/sh"), "meta": {"security": [{"system": CONFIDENTIALITY, "code": "V"}]}}
    withheld = decide(who("health-visitor"), "read", "Flag", restricted, created_by_org="Organization/sh")
    assert withheld.error("Flag", "f").outcome() == {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "forbidden",
        "diagnostics": "SF-0802: This Flag is restricted; only safeguarding leads and the organisation that "
                       "wrote it may see it"}]}
    never = decide(who("admin"), "delete", "Flag", flag("fgm"))
    assert isinstance(never.error("Flag", "f"), MethodNotAllowed) and never.msg_id == "SF-0405"
    with pytest.raises(Forbidden):
        decide(who("ed-clinician"), "read", "AuditEvent").enforce("AuditEvent", "a1")


def test_restricted_visible_to_a_system_client_of_the_authoring_org() -> None:
    restricted = {**flag("fgm", "Organization/sh"), "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}}
    assert visibility(who("system", org="Organization/sh"), "Flag", restricted, "Organization/sh") is Visibility.VISIBLE
    assert visibility(who("system"), "Flag", restricted, "Organization/sh") is Visibility.WITHHELD
    assert visibility(who("health-visitor"), "Flag", restricted, None) is Visibility.WITHHELD
    assert visibility(who("safeguarding-lead"), "Flag", restricted, "Organization/sh") is Visibility.VISIBLE
    assert visibility(who("ed-clinician"), "Flag", restricted, "Organization/sh") is not Visibility.VISIBLE


def test_sexual_health_writes_are_labelled_by_default() -> None:
    sh = who("sexual-health-clinician")
    out = default_labels(sh, flag("exploitation-risk"))
    assert out["meta"]["security"] == [
        {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"},
        {"system": ACT_CODE, "code": "SEX", "display": "sexuality and reproductive health information sensitivity"},
    ]
    explicit = {**flag("fgm"), "meta": {"security": [{"system": CONFIDENTIALITY, "code": "N"}]}}
    assert default_labels(sh, explicit)["meta"]["security"] == [
        {"system": CONFIDENTIALITY, "code": "N"},
        {"system": ACT_CODE, "code": "SEX", "display": "sexuality and reproductive health information sensitivity"},
    ]
    by_setting = who("system", care_setting="788122004")
    assert default_labels(by_setting, flag("fgm"))["meta"]["security"][0]["code"] == "R"
    plain = flag("fgm")
    assert default_labels(who("ed-clinician"), plain) is plain


def test_withheld_issue_text() -> None:
    assert withheld_issue().to_fhir() == {
        "severity": "information", "code": "suppressed",
        "diagnostics": "SF-0820: Restricted records about the patient(s) of this search were withheld from this "
                       "result. Restricted records are visible only to safeguarding leads and to the organisation "
                       "that wrote them; ask your safeguarding lead if you need to know what they hold",
    }


def test_interactions_no_one_may_perform() -> None:
    kept = refuse_interaction("DocumentReference", "delete")
    assert kept is not None and (kept.status, kept.msg_id, kept.reason) == (
        405, "SF-0405", "DocumentReference resources are never deleted; change their status instead")
    err = kept.error("DocumentReference", "doc-1")
    assert isinstance(err, MethodNotAllowed) and err.outcome()["issue"][0]["diagnostics"] == (
        "SF-0405: DocumentReference resources are never deleted; change their status instead")
    patched = refuse_interaction("AuditEvent", "patch")
    assert patched is not None and (patched.status, patched.msg_id, patched.reason) == (
        405, "SF-0406", "AuditEvent is written by the server only; it cannot be patched through the API")
    assert refuse_interaction("Patient", "delete") is None
    for interaction in ("create", "update", "patch", "delete"):  # the server's own conformance resources
        ro = refuse_interaction("ValueSet", interaction)
        assert ro is not None and (ro.status, ro.msg_id, ro.reason, ro.allow) == (
            405, "SF-0250", "ValueSet resources are the server's own conformance resources (fhir_profiles/) and "
            "are read-only: read and search them", "GET")
        assert ro.error("ValueSet").headers == {"Allow": "GET"}
        d = decide(who("admin"), interaction, "ValueSet", operation="conformance")
        assert (d.status, d.msg_id) == (405, "SF-0250")
    assert refuse_interaction("ValueSet", "read") is None and decide(who("admin"), "read", "ValueSet",
                                                                      operation="conformance").allowed
    # the policy's decision states the same rule, whoever asks
    d = decide(who("admin"), "delete", "DocumentReference", {"resourceType": "DocumentReference"})
    assert (d.status, d.msg_id) == (405, "SF-0405")


def test_operations() -> None:
    from app.security.policy import decide_operation

    assert decide_operation(who("admin"), "metrics").allowed and decide_operation(who("system"), "metrics").allowed
    d = decide_operation(who("ed-clinician"), "metrics")
    assert (d.status, d.msg_id, d.reason) == (403, "SF-0805", "Role ed-clinician may not use metrics")
    assert decide_operation(who("safeguarding-lead"), "governance-report").allowed
    assert not decide_operation(who("health-visitor"), "governance-report").allowed
    assert not decide_operation(who("mash-practitioner"), "safeguarding-summary").allowed
    assert not decide_operation(who("admin"), "no-such-operation").allowed

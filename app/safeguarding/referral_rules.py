"""Shared vocabulary of the MASH referral rules (docs/api/referrals.md): the codes, how to recognise
a referral copy / referral Communication / QA Task, local references, profile checks and the
"only status may change" comparison. Used by `referrals.py`, `referral_qa.py` and the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import BadRequest, Unprocessable
from app.fhir.ids import ID_RE
from app.fhir.search.extract import split_reference
from app.vocabulary import (
    CARE_TEAM_ROLE,
    DOCUMENT_TYPE,
    QA_OUTCOME,
    STATUS_REASON,
    TASK_CODE,
    DocumentType,
    TaskCode,
)
from app.vocabulary import COMMUNICATION_CATEGORY as COMM_CATEGORY
from app.vocabulary import STATUS_REASON_CODE as STATUS_REASON_CS

__all__ = ["CARE_TEAM_ROLE", "COMM_CATEGORY", "QA_OUTCOME", "STATUS_REASON_CS", "TASK_CODE"]

DOC_TYPE = DOCUMENT_TYPE


def codes(concepts: Any, system: str) -> set[str]:
    """Codes of `system` in a CodeableConcept or a list of them."""
    items = concepts if isinstance(concepts, list) else [concepts]
    return {
        str(c["code"]) for cc in items if isinstance(cc, dict)
        for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("system") == system and c.get("code")
    }


def is_referral_copy(content: dict[str, Any] | None) -> bool:
    return bool(content) and DocumentType.MASH_REFERRAL in codes((content or {}).get("type"), DOC_TYPE)


def categories(content: dict[str, Any] | None) -> set[str]:
    return codes((content or {}).get("category"), COMM_CATEGORY)


def is_qa_task(content: dict[str, Any] | None) -> bool:
    return bool(content) and TaskCode.REFERRAL_QA in codes((content or {}).get("code"), TASK_CODE)


def local_ref(value: Any, base: str, rtype: str | None = None) -> str | None:
    """`Type/id` of a Reference (or reference string) to this server, optionally of one type; else None."""
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str):
        return None
    t, rid, _url = split_reference(ref, base)
    if not t or not rid or (rtype is not None and t != rtype):
        return None
    return f"{t}/{rid}"


def _comparable(value: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (value.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in value.items() if k not in ("id", "meta")}
    if meta:
        out["meta"] = meta
    return out


def changed_elements(current: dict[str, Any], new: dict[str, Any], allowed: frozenset[str]) -> list[str]:
    """Top-level elements that differ between the stored and the new content, other than `allowed`
    (and `id`, `meta.versionId`, `meta.lastUpdated`, which the server owns)."""
    a, b = _comparable(current), _comparable(new)
    return sorted(k for k in (set(a) | set(b)) - allowed if a.get(k) != b.get(k))


def without_extension(content: dict[str, Any], url: str) -> list[Any]:
    return [e for e in content.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == url)]


def has_extension(content: dict[str, Any], url: str) -> bool:
    return any(isinstance(e, dict) and e.get("url") == url for e in content.get("extension") or [])


def immutable(resource_type: str, ref: str, changed: list[str], msg_id: str) -> Unprocessable:
    return Unprocessable(
        f"{ref} is part of a referral copy and cannot be changed: only status may change (to "
        f"entered-in-error, with a reason); store a correction as a new DocumentReference whose "
        f"relatesTo replaces the old one. Changed: {', '.join(changed)}",
        msg_id=msg_id, code="business-rule", expression=[f"{resource_type}.{k}" for k in changed],
    )


def organization_param(raw: str, base: str) -> str:
    """An `organization` operation parameter: `Organization/x`, `x`, or an absolute URL under our base."""
    text = raw.strip()
    ref = local_ref(text, base) if "/" in text else (f"Organization/{text}" if ID_RE.match(text) else None)
    if ref is None or not ref.startswith("Organization/") or not ID_RE.match(ref.partition("/")[2]):
        raise BadRequest(f"organization must be a reference to an Organization (Organization/<id>), not '{raw}'",
                         msg_id="SF-0950", code="value", expression="organization")
    return ref


@dataclass(frozen=True)
class StatusRule:
    """How a referral resource may change once stored: only `status`, only to entered-in-error, with the
    reason in `reason` (the DocumentReference's status-reason extension, the Communication's statusReason)."""

    resource_type: str
    reason: str  # "extension" | "statusReason"
    wording: str  # how the reason is named in the error
    msg_ids: tuple[str, str, str]  # other element changed, status not allowed, reason missing
    note: str = ""


def check_status_change(rule: StatusRule, current: dict[str, Any], new: dict[str, Any]) -> None:
    rtype, ref = rule.resource_type, f"{rule.resource_type}/{current.get('id')}"
    changed = changed_elements(current, new, frozenset({"status", rule.reason}))
    if rule.reason == "extension" and without_extension(current, STATUS_REASON) != without_extension(new, STATUS_REASON):
        changed = sorted({*changed, "extension"})  # other extensions are content like any other
    if changed:
        raise immutable(rtype, ref, changed, rule.msg_ids[0])
    old, status = current.get("status"), new.get("status")
    if status == old:
        if new.get(rule.reason) != current.get(rule.reason):
            raise immutable(rtype, ref, [rule.reason], rule.msg_ids[0])
        return
    if status != "entered-in-error" or old == "entered-in-error":
        raise Unprocessable(f"The status of {ref} may change only to entered-in-error (it is '{old}'){rule.note}",
                            msg_id=rule.msg_ids[1], code="business-rule", expression=f"{rtype}.status")
    present = has_extension(new, STATUS_REASON) if rule.reason == "extension" else bool(new.get(rule.reason))
    if not present:
        raise Unprocessable(f"Setting {ref} to entered-in-error needs {rule.wording}", msg_id=rule.msg_ids[2],
                            code="required", expression=f"{rtype}.{rule.reason}")

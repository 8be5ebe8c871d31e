"""References in safeguarding flags and what they point at: the subject Patient, given by reference or
by NHS number only; comparable keys for references; the NHS numbers of a Patient;
and (from app/storage/locks.py) the per-key transaction lock that check-then-write rules (duplicate
flags, access notifications) hold on PostgreSQL. Spec: https://hl7.org/fhir/R4/references.html
"""

from __future__ import annotations

from typing import Any

from app.errors import Issue
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.fhir.search.extract import references
from app.safeguarding.lookup import Lookup
from app.stored import StoredResource


def ref_key(value: Any, base: str) -> tuple[str, str] | None:
    """A Reference as (search modifier, value): ("", `Type/id` or an absolute URL), or (":identifier",
    `system|value`) for one given by identifier only; equal keys mean the same target."""
    for rtype, rid, url, isys, ival in references(value, base):
        if rtype and rid:
            return "", f"{rtype}/{rid}"
        if url:
            return "", url
        if ival:
            return ":identifier", f"{isys or ''}|{ival}"
    return None


def local_ref(value: Any, base: str, rtype: str) -> str | None:
    """`Type/id` when the Reference points at a resource of `rtype` on this server."""
    for t, rid, _url, _s, _v in references(value, base):
        if t == rtype and rid:
            return f"{t}/{rid}"
    return None


def _unresolved(diagnostics: str) -> Issue:
    return Issue("business-rule", diagnostics, "error", ("Flag.subject.identifier",), "SF-0232")


async def resolve_subject(lookup: Lookup, flag: dict[str, Any]) -> tuple[StoredResource | None, Issue | None]:
    """The subject Patient (None when it is not stored yet: a literal reference may point at a Patient
    created later in the same transaction), or the issue of an identifier that resolves to nobody."""
    subject = flag.get("subject")
    if not isinstance(subject, dict):
        return None, None
    ref = local_ref(subject, lookup.base, "Patient")
    if ref is not None:
        return await lookup.get(ref), None
    if subject.get("reference") is not None:
        return None, None  # another server's Patient, a contained one: nothing to resolve here
    ident = subject.get("identifier")
    ident = ident if isinstance(ident, dict) else {}
    value = ident.get("value")
    if ident.get("system") != NHS_NUMBER_SYSTEM or not isinstance(value, str):
        return None, _unresolved(
            f"A Flag's subject given without a reference must carry the child's NHS number ({NHS_NUMBER_SYSTEM})"
        )
    patient = await lookup.patient_by_nhs_number(value)
    if patient is None:
        return None, _unresolved(
            f"No single Patient with NHS number {value} is known: create the Patient first, or "
            "reference it in Flag.subject.reference"
        )
    return patient, None


def nhs_numbers(patient: StoredResource) -> list[str]:
    """The Patient's NHS numbers (usually one)."""
    return nhs_numbers_in(patient.content)


def nhs_numbers_in(content: dict[str, Any]) -> list[str]:
    """`nhs_numbers` of a Patient resource as a page holds it (its JSON)."""
    return [
        str(i["value"])
        for i in content.get("identifier") or []
        if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM and isinstance(i.get("value"), str)
    ]

"""Which of our profiles a resource must meet: those it claims in `meta.profile` that we publish, plus a
default per resource type, so that an EPR that knows nothing of our profiles is still held to them where
the resource is plainly a safeguarding one:

    Flag               safeguarding-flag                  always (SafeFlag's Flags are all safeguarding flags)
    Patient            safeguarding-patient               it carries an NHS number identifier
    Encounter          ed-attendance-encounter            class is v3-ActCode EMER
    Communication      safeguarding-communication         a category from safeguarding-communication-category
    DocumentReference  referral-copy-document-reference   type mash-referral (safeguarding-document-type)
    RelatedPerson      significant-adult-related-person   one of our RelatedPerson extensions
    Task               safeguarding-task                  a code from our safeguarding-task CodeSystem

A `meta.profile` we do not publish is not checked and not rejected (warning SF-0615), as HAPI does with
`errorForUnknownProfiles=false`: EPRs legitimately claim national profiles (UK Core) we do not host.
The core profile of the type itself (http://hl7.org/fhir/StructureDefinition/<type>) is always met.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.vocabulary import (
    ACT_CODE,
    CODE_SYSTEM,
    COMMUNICATION_CATEGORY,
    DOCUMENT_TYPE,
    HL7_STRUCTURE_DEFINITION,
    STRUCTURE_DEFINITION,
    TASK_CODE,
    DocumentType,
)

SD = STRUCTURE_DEFINITION
CS = CODE_SYSTEM
HL7_SD = HL7_STRUCTURE_DEFINITION


def _codings(value: Any) -> list[dict[str, Any]]:
    concepts = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for concept in concepts:
        if isinstance(concept, dict):
            if "coding" in concept:
                out.extend(c for c in concept["coding"] if isinstance(c, dict))
            else:
                out.append(concept)  # a bare Coding (Encounter.class)
    return out


def _has_coding(value: Any, system: str, code: str | None = None) -> bool:
    return any(c.get("system") == system and (code is None or c.get("code") == code) for c in _codings(value))


def _has_nhs_number(content: dict[str, Any]) -> bool:
    ids = content.get("identifier")
    if not isinstance(ids, list):
        return False
    return any(isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM for i in ids)


_RP_EXTENSIONS = {SD + n for n in ("parental-responsibility", "household-member", "significant-individual")}

DEFAULTS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "Flag": (SD + "safeguarding-flag", lambda r: True),
    "Patient": (SD + "safeguarding-patient", _has_nhs_number),
    "Encounter": (SD + "ed-attendance-encounter", lambda r: _has_coding(r.get("class"), ACT_CODE, "EMER")),
    "Communication": (
        SD + "safeguarding-communication",
        lambda r: _has_coding(r.get("category"), COMMUNICATION_CATEGORY),
    ),
    "DocumentReference": (
        SD + "referral-copy-document-reference",
        lambda r: _has_coding(r.get("type"), DOCUMENT_TYPE, DocumentType.MASH_REFERRAL),
    ),
    "RelatedPerson": (
        SD + "significant-adult-related-person",
        lambda r: any(isinstance(e, dict) and e.get("url") in _RP_EXTENSIONS for e in r.get("extension", ())),
    ),
    "Task": (SD + "safeguarding-task", lambda r: _has_coding(r.get("code"), TASK_CODE)),
}


def claimed_profiles(content: dict[str, Any]) -> list[str]:
    """meta.profile entries (version suffix dropped), without the core profile of the type itself."""
    meta = content.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    if not isinstance(profiles, list):
        return []
    core = HL7_SD + str(content.get("resourceType"))
    out = []
    for p in profiles:
        if isinstance(p, str):
            url = p.split("|", 1)[0]
            if url != core and url not in out:
                out.append(url)
    return out


def default_profile(content: dict[str, Any]) -> str | None:
    rule = DEFAULTS.get(str(content.get("resourceType")))
    if rule is not None and rule[1](content):
        return rule[0]
    return None

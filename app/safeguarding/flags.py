"""Flag lifecycle rules, as FGM-IS and CP-IS apply them (docs/api/flags.md), run before every Flag write (`flag_rules`, put on the interceptor chain by
app/resource_rules.py): create, update, update-as-create, patch, conditional update and transaction
entries. Spec: https://hl7.org/fhir/R4/flag.html

Data-driven: the category -> Flag.code table is the ConceptMap `flag-category-to-code` in
`fhir_profiles/` (read through app/fhir/terminology.py), and a target's `dependsOn subject=mother`
is what makes a category's subject the mother. The shape of a Flag (one safeguarding category, a code
from the ValueSet, author types, extension values) is the SafeguardingFlag profile's, checked before
these rules run; what is here is about other resources and about change (references and the subject
Patient: flag_refs.py).

Create (and update-as-create):
- SF-0230 the status is `active` (Flag.status);
- SF-0231 Flag.code holds the code the ConceptMap gives for the category (Flag.code);
- SF-0232 a subject given only by identifier must be an NHS number that resolves to exactly one
  Patient (Flag.subject.identifier). The flag is stored as sent: searches
  with `patient:identifier=` find it either way, and so do the summary and access notifications;
- SF-0233 the mother as subject (unborn-child-protection-plan): a Patient known to the server, not
  recorded as `male`, and, when the birth date is known, aged MOTHER_MIN_AGE or over. A mother may
  herself be a child (a pre-birth plan for a pregnant 15-year-old is a real case), so there is no adult
  test; the age floor catches the plan recorded on a young sibling, the gender test the plan recorded
  on the father. A gender not recorded (or `other`/`unknown`) passes: incomplete demographics must not
  stop a pre-birth plan being recorded;
- SF-0234 fgm: a known Patient with a birth date, under 18 today (FGM-IS rejects 18+; an unknown age
  cannot be shown to be under 18);
- SF-0235 significant-adult: the significant-adult extension names an existing RelatedPerson whose
  `patient` is the flag's subject; SF-0236 that extension on any other category is an error.
Update: SF-0237 only `status`, `period.end` and the status-reason extension may change (one issue per
changed element; `meta` is bookkeeping except `meta.security`, which decides who sees the flag);
SF-0238 an `inactive` or `entered-in-error` flag carries the status-reason extension.
Both: SF-0239 (409 `duplicate`) a flag becoming active while another active flag has the same
category, subject and author. Conditional create (If-None-Exist) returns the existing flag before this
runs. Both see only the flags the writer may see: a restricted flag withheld from the writer neither
matches nor conflicts, so no answer betrays it. A flag the writer's role or scopes do not let it read
(`system/Flag.c` only) is not matched either, but still conflicts (a duplicate is a clinical-safety
hazard): the 409 then names no flag, author or content (policy.conflict_sight). On PostgreSQL the check holds a transaction advisory
lock on (category, subject, author) so two concurrent creates cannot both pass; SQLite serialises
writers already (BEGIN IMMEDIATE).
Flags are never deleted: policy.py answers 405 before any rule runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from app.errors import Conflict, Issue, Unprocessable
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.fhir.profiles import get_store
from app.safeguarding.flag_refs import local_ref, nhs_numbers, ref_key, resolve_subject
from app.safeguarding.lookup import Lookup
from app.safeguarding.routing import ADULT_AGE, age_on
from app.search.prepared import PreparedSearch, prepared
from app.security.policy import Visibility
from app.storage.locks import advisory_lock
from app.stored import StoredResource
from app.vocabulary import CANONICAL_BASE, STATUS_REASON, FlagCategory
from app.vocabulary import FLAG_CATEGORY as CATEGORY_SYSTEM

if TYPE_CHECKING:
    from app.ports import WriteContext

CATEGORY_TO_CODE = CANONICAL_BASE + "/ConceptMap/flag-category-to-code"
SUBJECT_PROPERTY = CATEGORY_TO_CODE + "#subject"
SIGNIFICANT_ADULT = CANONICAL_BASE + "/StructureDefinition/significant-adult"
ENDED = frozenset({"inactive", "entered-in-error"})
MOTHER_MIN_AGE = 10


def _codings(concept: Any) -> list[dict[str, Any]]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def category_of(flag: dict[str, Any]) -> str | None:
    """The flag's code from `safeguarding-flag-category` (the profile allows exactly one)."""
    for concept in flag.get("category") or []:
        for coding in _codings(concept):
            if coding.get("system") == CATEGORY_SYSTEM and isinstance(coding.get("code"), str):
                return str(coding["code"])
    return None


def code_targets(category: str) -> list[dict[str, Any]]:
    """The ConceptMap targets for a category: [{system, code, display, dependsOn?...}]."""
    return get_store().terminology.translate(CATEGORY_TO_CODE, CATEGORY_SYSTEM, category)


def subject_role(category: str) -> str | None:
    """`mother` when the ConceptMap says the flag's subject is the mother (dependsOn #subject)."""
    for target in code_targets(category):
        for dep in target.get("dependsOn") or []:
            if dep.get("property") == SUBJECT_PROPERTY:
                return str(dep.get("value"))
    return None


def extensions(flag: dict[str, Any], url: str) -> list[tuple[int, dict[str, Any]]]:
    return [
        (i, e)
        for i, e in enumerate(flag.get("extension") or [])
        if isinstance(e, dict) and e.get("url") == url
    ]


def _unprocessable(issues: list[Issue]) -> None:
    if issues:
        raise Unprocessable(issues=issues)


def _rule(diagnostics: str, expression: str, msg_id: str) -> Issue:
    return Issue("business-rule", diagnostics, "error", (expression,), msg_id)


# -- create -----------------------------------------------------------------------------------------
def code_issue(flag: dict[str, Any], category: str) -> Issue | None:
    targets = code_targets(category)
    if not targets:
        return None  # a category outside our CodeSystem: the profile's required binding reports it
    wanted = {(t.get("system"), t.get("code")) for t in targets}
    if any((c.get("system"), c.get("code")) in wanted for c in _codings(flag.get("code"))):
        return None
    expected = " or ".join(f"{t.get('system')}|{t.get('code')} '{t.get('display')}'" for t in targets)
    return _rule(
        f"Flag.code of a {category} flag must be {expected} (ConceptMap flag-category-to-code)",
        "Flag.code",
        "SF-0231",
    )


def _age(patient: StoredResource, today: date) -> int | None:
    birth = patient.content.get("birthDate")
    return age_on(birth, today) if isinstance(birth, str) else None


def mother_issue(category: str, patient: StoredResource | None, today: date) -> Issue | None:
    why = None
    if patient is None:
        why = "is not a Patient known to this server"
    elif patient.content.get("gender") == "male":
        why = f"is Patient/{patient.id}, recorded as male"
    else:
        age = _age(patient, today)
        if age is not None and age < MOTHER_MIN_AGE:
            why = f"is Patient/{patient.id}, aged {age}: too young to be the mother"
    if why is None:
        return None
    return _rule(
        f"The subject of a flag of category {category} is the mother (the plan is recorded under her "
        f"NHS number); this subject {why}",
        "Flag.subject",
        "SF-0233",
    )


def fgm_issue(patient: StoredResource | None, today: date) -> Issue | None:
    age = _age(patient, today) if patient is not None else None
    if patient is None:
        why = "is not a Patient known to this server, so their age cannot be checked"
    elif age is None:
        why = f"is Patient/{patient.id}, who has no birth date, so their age cannot be checked"
    elif age >= ADULT_AGE:
        why = f"is Patient/{patient.id}, aged {age}"
    else:
        return None
    return _rule(
        f"An fgm flag (FGM-IS) is for children under {ADULT_AGE} only; this subject {why}",
        "Flag.subject",
        "SF-0234",
    )


async def significant_adult_issues(
    lookup: Lookup, flag: dict[str, Any], category: str, patient: StoredResource | None
) -> list[Issue]:
    found = extensions(flag, SIGNIFICANT_ADULT)
    if category != FlagCategory.SIGNIFICANT_ADULT:
        return [
            _rule(
                f"The significant-adult extension belongs on significant-adult flags, not on a {category} "
                "flag",
                f"Flag.extension[{i}]",
                "SF-0236",
            )
            for i, _ in found
        ]
    if not found:
        return [
            _rule(
                "A significant-adult flag names the adult: add the significant-adult extension "
                f"({SIGNIFICANT_ADULT}) referencing their RelatedPerson",
                "Flag.extension",
                "SF-0235",
            )
        ]
    issues = []
    for i, ext in found:
        where = f"Flag.extension[{i}].valueReference"
        ref = local_ref(ext.get("valueReference"), lookup.base, "RelatedPerson")
        adult = await lookup.get(ref) if ref else None
        if adult is None:
            issues.append(
                _rule(
                    "The significant-adult extension must reference a RelatedPerson known to this "
                    f"server ({ref or 'no RelatedPerson reference given'})",
                    where,
                    "SF-0235",
                )
            )
            continue
        child = local_ref(adult.content.get("patient"), lookup.base, "Patient")
        if patient is not None and child != f"Patient/{patient.id}":
            issues.append(
                _rule(
                    f"{ref} is a related person of {child or 'another patient'}, not of the flag's "
                    f"subject Patient/{patient.id}",
                    where,
                    "SF-0235",
                )
            )
    return issues


async def create_issues(
    ctx: WriteContext,
    lookup: Lookup,
    flag: dict[str, Any],
    patient: StoredResource | None,
    subject_issue: Issue | None,
) -> list[Issue]:
    issues: list[Issue] = []
    if flag.get("status") != "active":
        issues.append(
            _rule(
                f"A Flag is created with status 'active', not '{flag.get('status')}': raise it, then "
                "end it by a status change with a status-reason",
                "Flag.status",
                "SF-0230",
            )
        )
    if subject_issue is not None:
        issues.append(subject_issue)
    category = category_of(flag)
    if category is None:
        return issues  # no safeguarding category: the profile has already said so
    issue = code_issue(flag, category)
    if issue is not None:
        issues.append(issue)
    role = subject_role(category)
    if subject_issue is None and (role == "mother" or category == FlagCategory.FGM):
        today = ctx.clock.now().date()  # only here: every clock call moves the test clock on
        check = mother_issue(category, patient, today) if role == "mother" else fgm_issue(patient, today)
        if check is not None:
            issues.append(check)
    return issues + await significant_adult_issues(lookup, flag, category, patient)


# -- update -----------------------------------------------------------------------------------------
def changed_elements(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Elements other than status, period.end and the status-reason extension that differ."""
    out: list[str] = []
    for key in sorted((set(old) | set(new)) - {"id", "status"}):
        before, after = old.get(key), new.get(key)
        if key == "meta":
            if (before or {}).get("security") != (after or {}).get("security"):
                out.append("Flag.meta.security")
        elif key == "period":
            for part in sorted((set(before or {}) | set(after or {})) - {"end"}):
                if (before or {}).get(part) != (after or {}).get(part):
                    out.append(f"Flag.period.{part}")
        elif key == "extension":
            keep_old = [
                e for e in before or [] if not (isinstance(e, dict) and e.get("url") == STATUS_REASON)
            ]
            keep_new = [e for e in after or [] if not (isinstance(e, dict) and e.get("url") == STATUS_REASON)]
            if keep_old != keep_new:
                out.append("Flag.extension")
        elif before != after:
            out.append(f"Flag.{key}")
    return out


def update_issues(flag: dict[str, Any], current: dict[str, Any]) -> list[Issue]:
    issues = [
        _rule(
            f"{element} cannot change once a Flag is raised: only status, period.end and the status-reason "
            "extension may (raise a new flag instead)",
            element,
            "SF-0237",
        )
        for element in changed_elements(current, flag)
    ]
    status = flag.get("status")
    if status in ENDED and not extensions(flag, STATUS_REASON):
        issues.append(
            _rule(
                f"A Flag with status '{status}' carries the status-reason extension ({STATUS_REASON}) "
                "saying why it ended",
                "Flag.extension",
                "SF-0238",
            )
        )
    return issues


# -- duplicates -------------------------------------------------------------------------------------
_ACTIVE_OF_CATEGORY = [("status", "active"), ("category", f"{CATEGORY_SYSTEM}|:category")]
_ACTIVE_FLAGS_BY_CHILD = prepared("Flag", [("subject", "Patient/:child"), *_ACTIVE_OF_CATEGORY])


@lru_cache(maxsize=8)
def _active_flags_by_nhs(numbers: int) -> PreparedSearch:
    """Active flags of a category about a child with `numbers` NHS numbers (usually one), named by
    reference or by NHS number (`subject:identifier` matches both)."""
    about = ",".join(f"{NHS_NUMBER_SYSTEM}|:nhs{i}" for i in range(numbers))
    return prepared("Flag", [("subject:identifier", about), *_ACTIVE_OF_CATEGORY])


async def check_duplicate(
    lookup: Lookup, flag: dict[str, Any], category: str, patient: StoredResource | None, own_id: str | None,
    sight: Callable[[StoredResource], Visibility],
) -> None:
    """409 when another active flag of `category` by the same author is about the same child, whether
    either names the child by reference or by NHS number.

    How a flag counts is `sight` (policy.conflict_sight). A restricted flag withheld from the writer
    does not count: it is not named in a 409, nor betrayed by a 409 instead of a 201; the new flag stands
    beside it (a safeguarding lead sees both and may end one). The restricted label exists so that
    nobody else learns such a flag exists; a second flag does no harm that the lead cannot undo, a
    disclosure could. A flag the writer may not read for its role or scopes (not restricted) conflicts
    without being named: the writer learns only that such a flag exists, which it is about to assert."""
    author = ref_key(flag.get("author"), lookup.base)
    subject = ref_key(flag.get("subject"), lookup.base)
    if author is None or (patient is None and subject is None):
        return
    child = f"Patient/{patient.id}" if patient is not None else subject[1]  # type: ignore[index]
    await advisory_lock(lookup.session, f"Flag|{category}|{child}|{author[1]}")
    if patient is not None:
        numbers = nhs_numbers(patient)
        if numbers:
            values = {f"nhs{i}": n for i, n in enumerate(numbers)}
            found = await _active_flags_by_nhs(len(numbers)).run(lookup.session, category=category, **values)
        else:
            found = await _ACTIVE_FLAGS_BY_CHILD.run(lookup.session, category=category, child=patient.id)
    else:
        assert subject is not None
        found = await lookup.search("Flag", [
            ("subject" + subject[0], subject[1]), ("status", "active"), ("category", f"{CATEGORY_SYSTEM}|{category}"),
        ])
    for other in found:
        if other.id == own_id or ref_key(other.content.get("author"), lookup.base) != author:
            continue
        seen = sight(other)
        if seen is Visibility.WITHHELD:
            continue
        raise Conflict(
            f"Flag/{other.id} is already an active {category} flag for {child} by {author[1]}: end it, or "
            "use conditional create (If-None-Exist) to get the existing one"
            if seen is Visibility.VISIBLE
            else "An active flag of this category for this patient and author already exists; ask a reader "
            "with Flag read access",
            msg_id="SF-0239",
            code="duplicate",
            expression=["Flag.category", "Flag.subject", "Flag.author"],
        )


async def flag_rules(
    ctx: WriteContext, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    lookup = Lookup(ctx.session, ctx.base)
    creating = current is None or current.deleted
    patient: StoredResource | None = None
    if creating:
        patient, subject_issue = await resolve_subject(lookup, content)
        _unprocessable(await create_issues(ctx, lookup, content, patient, subject_issue))
    else:
        assert current is not None
        _unprocessable(update_issues(content, current.content))
    category = category_of(content)
    if category is None or content.get("status") != "active":
        return content
    if creating:
        await check_duplicate(lookup, content, category, patient, None, ctx.guard.sight)
    elif current is not None and current.content.get("status") != "active":  # reactivated
        patient, _ = await resolve_subject(lookup, content)
        await check_duplicate(lookup, content, category, patient, current.id, ctx.guard.sight)
    return content

"""Access notifications (as CP-IS tells a local authority each time one of its
children is looked up in unscheduled care): a read of a child's ACTIVE flags by a principal whose
`care_setting` is in the `unscheduled-care-setting` ValueSet of `fhir_profiles/` (SNOMED CT 310000008
emergency department, and every code of our `care-setting` CodeSystem: urgent care, walk-in centre,
out of hours, maternity triage) creates one Communication per owning organisation per child per day:

- category `access-notification`, `subject` the child, `about` the flags that were read, `sent` now,
  `status` completed, `sender` the reader's organisation, `recipient` the owning organisation;
- the owning organisation is the flag's author when that is an Organization, else the `org` of the
  token that created the flag (`resource.created_by_org`), else (a flag written by the server's own
  work) the organisation of the authoring PractitionerRole; a flag with no owner, or owned by the
  reader's own organisation, notifies nobody;
- the payload says who (fhirUser, else the token subject; the organisation), where (the care
  setting), when, and which flags;
- one that names a restricted flag (a safeguarding lead or admin in unscheduled care read it) is labelled
  R and kept as the flag's organisation's: the recipient, leads and admins read it, the reader's
  colleagues (its sender) do not;
- idempotent: identifier `https://fhir.safeflag.example/Id/access-notification|<org>|<child>|<day>`
  (`<child>` is `Patient/id`, or the NHS number of a child known by identifier only; `<day>` is the
  UTC date of the read), checked under a transaction advisory lock on PostgreSQL.

Any other care setting, no care setting, or `X-Access-Context: scheduled` reads silently (still
audited by the security layer). Delivery is the subscription machinery's: the Communication is
written through the repository, so its outbox row fires the `access-notification` topic.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.fhir.profiles import get_store
from app.safeguarding.flag_refs import resolve_subject
from app.safeguarding.flags import category_of
from app.safeguarding.lookup import Lookup
from app.security.labels import RESTRICTED, is_restricted
from app.storage.locks import advisory_lock, on_postgresql
from app.storage.repository import utc_ms
from app.stored import StoredResource, format_instant
from app.vocabulary import CANONICAL_BASE, CommunicationCategory
from app.vocabulary import COMMUNICATION_CATEGORY as COMM_CATEGORY

if TYPE_CHECKING:
    from app.ports import WriteContext
    from app.security.principal import Principal

ACCESS_ID_SYSTEM = CANONICAL_BASE + "/Id/access-notification"
UNSCHEDULED_CARE = CANONICAL_BASE + "/ValueSet/unscheduled-care-setting"
ACCESS_CONTEXT_HEADER = "x-access-context"


def is_scheduled(header: str | None) -> bool:
    """`X-Access-Context: scheduled` asks for a silent read: no access notification."""
    return header is not None and header.strip().lower() == "scheduled"


def unscheduled_setting(care_setting: str | None) -> tuple[str, str] | None:
    """(system, code) of the token's care setting when it is unscheduled care, else None. The claim is
    a bare code (`310000008`, `urgent-care`) or `system|code`."""
    if not care_setting:
        return None
    system, bar, code = care_setting.rpartition("|")
    for member in sorted(get_store().terminology.expand(UNSCHEDULED_CARE)):
        if member[1] == code and (not bar or member[0] == system):
            return member
    return None


def _escape(value: str) -> str:
    """A token search value with `\\`, `|`, `,` and `$` escaped (https://hl7.org/fhir/R4/search.html#escaping)."""
    for ch in ("\\", "|", ",", "$"):
        value = value.replace(ch, "\\" + ch)
    return value


async def owner_of(lookup: Lookup, flag: StoredResource) -> str | None:
    author = flag.content.get("author")
    ref = author.get("reference") if isinstance(author, dict) else None
    if isinstance(ref, str) and ref.startswith("Organization/"):
        return ref
    if flag.created_by_org:
        return flag.created_by_org
    return await lookup.organization_of(author if isinstance(author, dict) else None)


async def child_of(lookup: Lookup, flag: StoredResource) -> tuple[str, dict[str, Any]] | None:
    """(key, Reference) of the flag's subject: `Patient/id` when it can be resolved, else its NHS number."""
    subject = flag.content.get("subject")
    patient, _ = await resolve_subject(lookup, flag.content)
    if patient is not None:
        return f"Patient/{patient.id}", {"reference": f"Patient/{patient.id}"}
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(ref, str) and ref.startswith("Patient/"):
        return ref, {"reference": ref}
    ident = subject.get("identifier") if isinstance(subject, dict) else None
    if (
        isinstance(ident, dict)
        and ident.get("system") == NHS_NUMBER_SYSTEM
        and isinstance(ident.get("value"), str)
    ):
        return str(ident["value"]), {
            "type": "Patient",
            "identifier": {"system": NHS_NUMBER_SYSTEM, "value": ident["value"]},
        }
    return None


def notification(
    principal: Principal,
    setting: tuple[str, str],
    owner: str,
    child: dict[str, Any],
    flags: list[StoredResource],
    key: str,
    sent: datetime,
) -> dict[str, Any]:
    when = format_instant(sent)
    place = get_store().terminology.display(*setting) or setting[1]
    who = principal.fhir_user or f"user '{principal.sub}'"
    which = ", ".join(f"{category_of(f.content) or 'flag'} (Flag/{f.id})" for f in flags)
    text = (
        f"Safeguarding flags owned by {owner} were viewed in unscheduled care. Who: {who}"
        f"{' of ' + principal.org if principal.org else ''}. Where: {place} ({setting[0]}|{setting[1]}). "
        f"When: {when}. Which flags: {which}."
    )
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": ACCESS_ID_SYSTEM, "value": key}],
        "status": "completed",
        "category": [
            {
                "coding": [
                    {"system": COMM_CATEGORY, "code": CommunicationCategory.ACCESS_NOTIFICATION,
                     "display": "Access notification"}
                ]
            }
        ],
        "subject": child,
        "about": [{"reference": f"Flag/{f.id}"} for f in flags],
        "sent": when,
        "recipient": [{"reference": owner}],
        "payload": [{"contentString": text}],
    }
    if principal.org:
        comm["sender"] = {"reference": principal.org}
    return comm


async def record_flag_access(
    ctx: WriteContext,
    principal: Principal | None,
    flags: list[StoredResource],
    *,
    scheduled: bool,
    now: datetime | None = None,
) -> int:
    """Create the access notifications a read of `flags` implies (anything else in the list is ignored);
    returns how many were created. Call it in the read's own transaction, after the read succeeded.
    `now` defaults to the repository clock, asked only when a notification is due."""
    setting = unscheduled_setting(principal.care_setting) if principal is not None else None
    if principal is None or setting is None or scheduled:
        return 0
    lookup = Lookup(ctx.session, ctx.base)
    groups: dict[tuple[str, str], tuple[dict[str, Any], list[StoredResource]]] = {}
    children: dict[str, tuple[str, dict[str, Any]] | None] = {}  # the flags of one child share a subject
    for flag in flags:
        if flag.resource_type != "Flag" or flag.content.get("status") != "active":
            continue
        owner = await owner_of(lookup, flag)
        subject = repr(flag.content.get("subject"))
        if subject not in children:
            children[subject] = await child_of(lookup, flag)
        child = children[subject]
        if owner is None or owner == principal.org or child is None:
            continue
        groups.setdefault((owner, child[0]), (child[1], []))[1].append(flag)
    if not groups:
        return 0
    sent = utc_ms(now or ctx.clock.now())
    created = 0
    for (owner, child_key), (child_ref, owned) in sorted(groups.items()):
        key = f"{owner}|{child_key}|{sent.date().isoformat()}"
        same_day = [("identifier", f"{ACCESS_ID_SYSTEM}|{_escape(key)}")]
        # Most reads come after the day's notification exists: found without the lock, the read goes on
        # (the lock would hold every later read of the child until this transaction commits, so that
        # one child's attendances ran one after another). Not found: lock, then look again (a
        # concurrent read may have created it meanwhile; each statement sees what committed before it).
        if await lookup.search("Communication", same_day, count=1):
            continue
        await advisory_lock(ctx.session, ACCESS_ID_SYSTEM + "|" + key)
        # (on SQLite the transaction already holds the one writer, so the first look stands)
        if on_postgresql(ctx.session) and await lookup.search("Communication", same_day, count=1):
            continue
        comm = notification(principal, setting, owner, child_ref, owned, key, sent)
        writers = {f.created_by_org for f in owned if is_restricted(f.content)}
        if writers:  # it names restricted flags: only their readers may read it (not the reader's colleagues)
            comm["meta"] = {"security": [dict(RESTRICTED)]}
        await ctx.repo.create("Communication", comm, org=next(iter(writers)) if len(writers) == 1 else None)
        created += 1
    return created


async def flags_read(ctx: WriteContext, resources: list[StoredResource]) -> None:
    """Every Flag read or search by a user is an access that may notify the owning organisation."""
    if ctx.principal is not None and any(r.resource_type == "Flag" for r in resources):
        await record_flag_access(ctx, ctx.principal, resources, scheduled=ctx.scheduled)

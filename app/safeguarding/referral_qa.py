"""Quality review of referral copies and the local authority's reply (docs/api/referrals.md;
https://hl7.org/fhir/R4/task.html, https://hl7.org/fhir/R4/communication.html).

- A review is a Task with `code` `referral-qa` (`safeguarding-task`): `focus` a stored referral copy,
  `for` the copy's child, `owner` a safeguarding lead (a PractitionerRole coded `safeguarding-lead` in
  `care-team-role`, or a Practitioner holding one); once `completed` it carries an `output` of type
  `qa-outcome` whose value is a `referral-qa-outcome` code (the profile checks the code).
- The reply is a Communication of category `referral-outcome` whose `inResponseTo` names the
  `mash-referral` Communication(s) it answers, about the same child.
- The queue (`GET /fhir/DocumentReference/$qa-queue[?organization=Organization/x]`): current referral
  copies with no completed `referral-qa` Task, oldest first; "of" an organisation as the access policy
  defines it for DocumentReference (written by it, or naming it or one of its people as author or
  custodian).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from sqlalchemy import and_, exists, literal, or_, select

from app.errors import Unprocessable
from app.fhir import bundles
from app.fhir.search.params import parse_search
from app.fhir.search.results import SearchResult
from app.safeguarding.lookup import Lookup
from app.safeguarding.referral_rules import (
    CARE_TEAM_ROLE,
    DOC_TYPE,
    TASK_CODE,
    categories,
    codes,
    is_qa_task,
    is_referral_copy,
    local_ref,
)
from app.search.sql import count_query, page_query, where_clause
from app.security.guard import search_patients
from app.security.labels import withheld_issue
from app.security.search_scope import withholds
from app.storage.contents import stored
from app.storage.tables import SEARCHED_TABLES, idx_reference, resource
from app.vocabulary import CareTeamRole, CommunicationCategory, DocumentType, TaskCode

if TYPE_CHECKING:
    from app.ports import WriteContext
    from app.stored import StoredResource

LEAD = f"{CARE_TEAM_ROLE}|{CareTeamRole.SAFEGUARDING_LEAD}"
DOC = "DocumentReference"


async def _is_lead(lookup: Lookup, ref: str | None) -> bool:
    if ref is None:
        return False
    if ref.startswith("PractitionerRole/"):
        role = await lookup.get(ref)
        return role is not None and CareTeamRole.SAFEGUARDING_LEAD in codes(role.content.get("code"), CARE_TEAM_ROLE)
    if ref.startswith("Practitioner/"):
        return bool(await lookup.search("PractitionerRole", [("practitioner", ref), ("role", LEAD)], count=1))
    return False


async def referral_qa_rules(
    ctx: WriteContext, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    if not is_qa_task(content):
        return content
    base = ctx.base
    lookup = Lookup(ctx.session, base)
    focus = local_ref(content.get("focus"), base, "DocumentReference")
    doc = await lookup.get(focus) if focus else None
    if doc is None or not is_referral_copy(doc.content):
        raise Unprocessable(f"A referral-qa Task's focus is a stored referral copy; "
                            f"'{(content.get('focus') or {}).get('reference')}' is not one", msg_id="SF-0932",
                            code="business-rule", expression="Task.focus")
    if local_ref(content.get("for"), base) != local_ref(doc.content.get("subject"), base):
        raise Unprocessable(f"Task.for must be the child the referral copy {focus} is about", msg_id="SF-0935",
                            code="business-rule", expression="Task.for")
    owner = content.get("owner")
    if not await _is_lead(lookup, local_ref(owner, base)):
        raise Unprocessable(f"A referral-qa Task is owned by a safeguarding lead (a PractitionerRole coded "
                            f"{LEAD}, or its Practitioner); '{(owner or {}).get('reference')}' is not one",
                            msg_id="SF-0933", code="business-rule", expression="Task.owner")
    outcomes = [o for o in content.get("output") or [] if TaskCode.QA_OUTCOME in codes(o.get("type"), TASK_CODE)]
    if content.get("status") == "completed" and not outcomes:
        raise Unprocessable("A completed referral-qa Task records its outcome: an output of type qa-outcome "
                            "with a referral-qa-outcome code", msg_id="SF-0934", code="required",
                            expression="Task.output")
    return content


async def referral_outcome_rules(
    ctx: WriteContext, content: dict[str, Any], current: StoredResource | None, scratch: dict[str, Any]
) -> dict[str, Any]:
    """The local authority's reply answers a stored mash-referral Communication about the same child."""
    if CommunicationCategory.REFERRAL_OUTCOME not in categories(content):
        return content
    base = ctx.base
    answered = content.get("inResponseTo") or []
    if not answered:
        raise Unprocessable("A referral-outcome Communication names the referral it answers in inResponseTo",
                            msg_id="SF-0930", code="required", expression="Communication.inResponseTo")
    lookup = Lookup(ctx.session, base)
    for i, value in enumerate(answered):
        ref = local_ref(value, base, "Communication")
        referral = await lookup.get(ref) if ref else None
        if referral is None or CommunicationCategory.MASH_REFERRAL not in categories(referral.content):
            raise Unprocessable(f"inResponseTo '{(value or {}).get('reference')}' is not a stored mash-referral "
                                "Communication", msg_id="SF-0931", code="business-rule",
                                expression=f"Communication.inResponseTo[{i}]")
        if local_ref(referral.content.get("subject"), base) != local_ref(content.get("subject"), base):
            raise Unprocessable(f"Communication.subject differs from the subject of the referral {ref}",
                                msg_id="SF-0936", code="business-rule", expression="Communication.subject")
    return content


# -- the queue ---------------------------------------------------------------------------------------
async def organization_members(lookup: Lookup, org: str) -> set[tuple[str, str]]:
    """(type, id) of the Organization, its PractitionerRoles and their Practitioners: the people whose records
    are "of" it (for the user's own organisation, what `Principal.org_refs` holds: `members_of`)."""
    out = {("Organization", org.partition("/")[2])}
    for role in await lookup.search("PractitionerRole", [("organization", org)], count=1000):
        out.add(("PractitionerRole", role.id))
        prac = local_ref(role.content.get("practitioner"), lookup.base, "Practitioner")
        if prac:
            out.add(("Practitioner", prac.partition("/")[2]))
    return out


def members_of(org_refs: frozenset[str]) -> set[tuple[str, str]]:
    """`organization_members` of the user's own organisation, from what the unit of work read for the
    policy (app/security/affiliation.py `enrich`: the organisation, its PractitionerRoles and their
    Practitioners), not looked up again."""
    return {(kind, rid) for kind, _, rid in (ref.partition("/") for ref in org_refs) if rid}


@lru_cache(maxsize=16)
def _reviewed(res: Any, base: str) -> Any:
    """EXISTS a completed referral-qa Task whose focus is the DocumentReference row of `res`. The same
    expression for the same table and base (SQL expressions are immutable): built once, not at each
    view of the lead's desk."""
    task, focus = resource.alias("qa_task"), idx_reference.alias("qa_focus")
    treq = parse_search("Task", [("code", f"{TASK_CODE}|{TaskCode.REFERRAL_QA}"), ("status", "completed")], base=base)
    return exists(
        select(literal(1))
        .select_from(task.join(focus, and_(focus.c.resource_pk == task.c.pk, focus.c.param == "focus")))
        .where(*where_clause(treq, cast(Any, task)), focus.c.target_type == DOC, focus.c.target_id == res.c.res_id)
    )


def _queue_conditions(res: Any, base: str, org: str | None, members: set[tuple[str, str]]) -> list[Any]:
    """Beyond `type`/`status`: not yet reviewed, and (when asked) of the organisation."""
    conds = [~_reviewed(res, base)]
    if org:
        r = idx_reference.c
        named = select(r.resource_pk).where(
            r.res_type == DOC, r.param.in_(("author", "custodian")),
            or_(*[and_(r.target_type == t, r.target_id == i) for t, i in sorted(members)]),
        )
        conds.append(or_(res.c.created_by_org == org, res.c.pk.in_(named)))
    return conds


async def qa_queue(ctx: WriteContext, organization: str | None, query: list[tuple[str, str]], *,
                   members: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The searchset Bundle of current referral copies awaiting review (of `organization` when given),
    oldest first; searched, filtered and audited as `DocumentReference?...` would be for this principal.
    `members`: the organisation's people (`organization_members`) when the caller knows them already."""
    base = ctx.base
    ctx.guard.begin("search-type", DOC, query=f"{DOC}/$qa-queue?{urlencode(query)}")
    await ctx.guard.authorize("search", DOC)
    paging = [(k, v) for k, v in query if k in ("_count", "_offset")]
    req = parse_search(DOC, [("type", f"{DOC_TYPE}|{DocumentType.MASH_REFERRAL}"), ("status", "current"), *paging],
                       base=base, default_count=ctx.settings.default_count, max_count=ctx.settings.max_count)
    if members is None:
        members = await organization_members(Lookup(ctx.session, base), organization) if organization else set()
    restrict = ctx.guard.restrict()
    extra = [*_queue_conditions(resource, base, organization, members),
             *(restrict(resource, DOC) if restrict else [])]
    # the resource and index rows this transaction queued, so that the queue sees them; queued audit
    # records wait for COMMIT, as a search's do (the lead's desk's go out together)
    await ctx.repo.flush(reading=SEARCHED_TABLES)
    rows = (await ctx.session.execute(page_query(req, extra))).all() if req.count else []
    if req.count and len(rows) < req.count and (rows or req.offset == 0):
        total = req.offset + len(rows)  # the last page tells the total without counting, as a search's does
    else:
        total = int((await ctx.session.execute(count_query(req, extra))).scalar_one())
    issues = []
    matches = await stored(ctx.session, rows)
    patients = search_patients(matches)
    if ctx.principal is not None and await withholds(ctx.session, ctx.principal, req, patients):
        issues.append(withheld_issue())
    await ctx.guard.audited(patients=patients, shown=matches)
    shown = [("organization", organization)] if organization else []
    link_req = replace(req, resource_type=f"{DOC}/$qa-queue", query=shown)
    return bundles.searchset(SearchResult(link_req, matches, total), base, now=ctx.guard.now(), extra_issues=issues)

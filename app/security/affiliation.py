"""Who belongs to the principal's organisation, read from the stored reference data, so that the
policy can tell whether a record is "of" that organisation.

`enrich` adds to a Principal:
- `org_refs`: the PractitionerRoles whose `organization` is the token's `org`, and their Practitioners
  (a Communication addressed to `PractitionerRole/hv-7` is addressed to hv-7's team);
- `own_refs`: the user's PractitionerRoles (when `fhirUser` is a Practitioner) or Practitioner (when
  it is a PractitionerRole): "addressed to them";
- `shared_refs`, only for a MASH practitioner about to touch DocumentReference/Binary: what the
  Communications addressed to their organisation point to (payload contentReference, and the
  Binaries those DocumentReferences carry as attachment.url).
Two or three indexed queries per request (for `shared_refs`, the Communications' payloads alone are
read, not the whole records); the caller may cache the result per (org, fhirUser).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.extract import split_reference, walk
from app.security.principal import Principal
from app.storage.tables import idx_reference, resource
from app.vocabulary import UserRole

_SHARED_FOR = frozenset({"DocumentReference", "Binary"})


async def _role_links(session: AsyncSession, param: str, target_type: str, target_id: str) -> list[tuple[str, str]]:
    """(PractitionerRole id, its practitioner id or '') for roles whose `param` points at the target."""
    r, by, prac = resource.alias(), idx_reference.alias(), idx_reference.alias()
    stmt = (
        select(r.c.res_id, prac.c.target_id)
        .join(by, and_(by.c.resource_pk == r.c.pk, by.c.param == param))
        .outerjoin(prac, and_(prac.c.resource_pk == r.c.pk, prac.c.param == "practitioner",
                              prac.c.target_type == "Practitioner"))
        .where(r.c.res_type == "PractitionerRole", r.c.deleted.is_(False),
               by.c.target_type == target_type, by.c.target_id == target_id)
    )
    return [(rid, pid or "") for rid, pid in (await session.execute(stmt)).all()]


async def _practitioner_of_role(session: AsyncSession, role_id: str) -> str | None:
    r, prac = resource.alias(), idx_reference.alias()
    stmt = (
        select(prac.c.target_id)
        .join(r, r.c.pk == prac.c.resource_pk)
        .where(r.c.res_type == "PractitionerRole", r.c.res_id == role_id, prac.c.param == "practitioner",
               prac.c.target_type == "Practitioner")
    )
    return (await session.execute(stmt)).scalars().first()


def _local_refs(values: Any, base: str) -> set[str]:
    out = set()
    for value in values:
        ref = value.get("reference") if isinstance(value, dict) else value
        if isinstance(ref, str):
            rtype, rid, _url = split_reference(ref, base)
            if rtype and rid:
                out.add(f"{rtype}/{rid}")
    return out


async def _shared(session: AsyncSession, principal: Principal) -> frozenset[str]:
    refs = principal.org_refs | principal.own_refs
    by_type: dict[str, list[str]] = {}
    for ref in refs:
        rtype, _, rid = ref.partition("/")
        by_type.setdefault(rtype, []).append(rid)
    if not by_type:
        return frozenset()
    r, rec = resource.alias(), idx_reference.alias()
    targets = or_(*[and_(rec.c.target_type == t, rec.c.target_id.in_(sorted(ids))) for t, ids in by_type.items()])
    addressed = select(rec.c.resource_pk).where(rec.c.param == "recipient", targets)
    # only each Communication's payload is read (the rest of an access notification is most of its size),
    # once per Communication however many of its recipients are the organisation's
    stmt = select(r.c.content["payload"]).where(r.c.res_type == "Communication", r.c.deleted.is_(False),
                                                r.c.pk.in_(addressed))
    base = principal.base
    shared: set[str] = set()
    for (payload,) in (await session.execute(stmt)).all():
        shared |= _local_refs(walk(payload, ("contentReference",)), base)
        shared |= {ref for ref in _local_refs(walk(payload, ("contentAttachment", "url")), base)
                   if ref.startswith("Binary/")}
    doc_ids = sorted(ref.partition("/")[2] for ref in shared if ref.startswith("DocumentReference/"))
    if doc_ids:
        docs = select(resource.c.content).where(resource.c.res_type == "DocumentReference",
                                                resource.c.res_id.in_(doc_ids), resource.c.deleted.is_(False))
        for (content,) in (await session.execute(docs)).all():
            urls = walk(content, ("content", "attachment", "url"))
            shared |= {ref for ref in _local_refs(urls, base) if ref.startswith("Binary/")}
    return frozenset(ref for ref in shared if ref.partition("/")[0] in _SHARED_FOR)


async def enrich(session: AsyncSession, principal: Principal, resource_type: str | None = None) -> Principal:
    """The principal with its organisation's and its own references resolved (see module docstring)."""
    org_refs: set[str] = set()
    own_refs: set[str] = set()
    if principal.org:
        for role_id, prac_id in await _role_links(session, "organization", "Organization",
                                                  principal.org.partition("/")[2]):
            org_refs.add(f"PractitionerRole/{role_id}")
            if prac_id:
                org_refs.add(f"Practitioner/{prac_id}")
    if principal.fhir_user:
        ftype, _, fid = principal.fhir_user.partition("/")
        if ftype == "Practitioner":
            own_refs |= {f"PractitionerRole/{rid}" for rid, _ in await _role_links(session, "practitioner",
                                                                                   "Practitioner", fid)}
        else:
            prac = await _practitioner_of_role(session, fid)
            if prac:
                own_refs.add(f"Practitioner/{prac}")
    out = principal.with_refs(org_refs=frozenset(org_refs), own_refs=frozenset(own_refs))
    if principal.role == UserRole.MASH_PRACTITIONER and resource_type in _SHARED_FOR:
        out = out.with_refs(shared_refs=await _shared(session, out))
    return out

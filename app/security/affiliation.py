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
The organisation's and the user's look-ups go out as one statement (one round trip) per request;
`shared_refs` takes one or two more (the Communications' payloads alone are read, not the whole records); the caller may cache the result per (org, fhirUser).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.extract import split_reference, walk
from app.security.principal import Principal
from app.storage.tables import idx_reference, resource
from app.vocabulary import UserRole

_SHARED_FOR = frozenset({"DocumentReference", "Binary"})
_POINTERS = ("contentReference", "contentAttachment")  # the payload elements that share a record


def _role_links(which: str, param: str, target_type: str) -> Select[Any]:
    """(which, PractitionerRole id, its practitioner id or NULL) for roles whose `param` points at the
    target `<which>_id` (a bound parameter)."""
    r, by, prac = resource.alias(), idx_reference.alias(), idx_reference.alias()
    return (
        select(literal(which, String).label("which"), r.c.res_id, prac.c.target_id)
        .join(by, and_(by.c.resource_pk == r.c.pk, by.c.param == param))
        .outerjoin(prac, and_(prac.c.resource_pk == r.c.pk, prac.c.param == "practitioner",
                              prac.c.target_type == "Practitioner"))
        .where(r.c.res_type == "PractitionerRole", r.c.deleted.is_(False),
               by.c.target_type == target_type, by.c.target_id == bindparam(f"{which}_id"))
    )


def _practitioner_of_role(which: str) -> Select[Any]:
    """(which, the role's id, its practitioner id) of the PractitionerRole `<which>_id` (a bound parameter)."""
    r, prac = resource.alias(), idx_reference.alias()
    return (
        select(literal(which, String).label("which"), r.c.res_id, prac.c.target_id)
        .select_from(prac).join(r, r.c.pk == prac.c.resource_pk)
        .where(r.c.res_type == "PractitionerRole", r.c.res_id == bindparam(f"{which}_id"),
               prac.c.param == "practitioner", prac.c.target_type == "Practitioner")
    )


_LOOKUPS = {"org": _role_links("org", "organization", "Organization"),
            "own": _role_links("own", "practitioner", "Practitioner"), "role": _practitioner_of_role("role")}


@lru_cache(maxsize=8)
def _links_statement(lookups: tuple[str, ...]) -> Select[Any] | CompoundSelect[Any]:
    """The look-ups `lookups` (keys of `_LOOKUPS`) as one statement, built once: building it anew at each
    request (as the values were written into it) cost more Python than running it."""
    queries = [_LOOKUPS[k] for k in lookups]
    return queries[0] if len(queries) == 1 else union_all(*queries)


async def _links(session: AsyncSession, ids: dict[str, str]) -> list[tuple[str, str, str]]:
    """The rows of every look-up (`ids`: `_LOOKUPS` key -> the id it looks at), in one statement (one round trip)."""
    if not ids:
        return []
    stmt = _links_statement(tuple(ids))
    params = {f"{k}_id": v for k, v in ids.items()}
    return [(which, rid, pid or "") for which, rid, pid in (await session.execute(stmt, params)).all()]


def _local_refs(values: Any, base: str) -> set[str]:
    out = set()
    for value in values:
        ref = value.get("reference") if isinstance(value, dict) else value
        if isinstance(ref, str):
            rtype, rid, _url = split_reference(ref, base)
            if rtype and rid:
                out.add(f"{rtype}/{rid}")
    return out


@lru_cache(maxsize=16)
def _shared_statements(types: tuple[str, ...]) -> tuple[Select[Any], Select[Any]]:
    """(the payloads of the Communications addressed to any of the bound `<type>` ids, for each of `types`;
    the `content` of the DocumentReferences among the bound `doc_ids`), built once per set of types: built
    anew at each request, as the values were written into them, they cost more Python than they took to run."""
    r, rec = resource.alias(), idx_reference.alias()
    targets = or_(*[and_(rec.c.target_type == t, rec.c.target_id.in_(bindparam(t, expanding=True))) for t in types])
    addressed = select(rec.c.resource_pk).where(rec.c.param == "recipient", targets)
    # only each Communication's payload is read (the rest of an access notification is most of its size),
    # once per Communication however many of its recipients are the organisation's, and only when it names
    # a reference or attachment at all: an access notification's text (most of what a MASH is sent) is not
    # sent back to be decoded and walked at every request (the filter lets through any payload whose JSON
    # holds either key's name; what it points to is read from the payload itself, below)
    payload = r.c.content["payload"]
    text = cast(payload, Text)
    payloads = select(payload).where(r.c.res_type == "Communication", r.c.deleted.is_(False), r.c.pk.in_(addressed),
                                     or_(*(text.contains(f'"{key}"', autoescape=True) for key in _POINTERS)))
    docs = select(resource.c.content["content"]).where(
        resource.c.res_type == "DocumentReference", resource.c.res_id.in_(bindparam("doc_ids", expanding=True)),
        resource.c.deleted.is_(False))
    return payloads, docs


async def _shared(session: AsyncSession, principal: Principal) -> frozenset[str]:
    by_type: dict[str, list[str]] = {}
    for ref in principal.org_refs | principal.own_refs:
        rtype, _, rid = ref.partition("/")
        by_type.setdefault(rtype, []).append(rid)
    if not by_type:
        return frozenset()
    payloads, docs = _shared_statements(tuple(sorted(by_type)))
    base = principal.base
    shared: set[str] = set()
    for (payload,) in (await session.execute(payloads, {t: sorted(ids) for t, ids in by_type.items()})).all():
        shared |= _local_refs(walk(payload, ("contentReference",)), base)
        shared |= {ref for ref in _local_refs(walk(payload, ("contentAttachment", "url")), base)
                   if ref.startswith("Binary/")}
    doc_ids = sorted(ref.partition("/")[2] for ref in shared if ref.startswith("DocumentReference/"))
    if doc_ids:
        for (content,) in (await session.execute(docs, {"doc_ids": doc_ids})).all():
            urls = walk({"content": content}, ("content", "attachment", "url"))
            shared |= {ref for ref in _local_refs(urls, base) if ref.startswith("Binary/")}
    return frozenset(ref for ref in shared if ref.partition("/")[0] in _SHARED_FOR)


async def enrich(session: AsyncSession, principal: Principal, resource_type: str | None = None) -> Principal:
    """The principal with its organisation's and its own references resolved (see module docstring)."""
    ids: dict[str, str] = {}
    if principal.org:
        ids["org"] = principal.org.partition("/")[2]
    if principal.fhir_user:
        ftype, _, fid = principal.fhir_user.partition("/")
        ids["own" if ftype == "Practitioner" else "role"] = fid
    org_refs: set[str] = set()
    own_refs: set[str] = set()
    for which, role_id, prac_id in await _links(session, ids):
        if which == "org":
            org_refs.add(f"PractitionerRole/{role_id}")
            if prac_id:
                org_refs.add(f"Practitioner/{prac_id}")
        elif which == "own":
            own_refs.add(f"PractitionerRole/{role_id}")
        elif prac_id and not any(ref.startswith("Practitioner/") for ref in own_refs):
            own_refs.add(f"Practitioner/{prac_id}")  # the role's practitioner (the first found)
    out = principal.with_refs(org_refs=frozenset(org_refs), own_refs=frozenset(own_refs))
    if principal.role == UserRole.MASH_PRACTITIONER and resource_type in _SHARED_FOR:
        out = out.with_refs(shared_refs=await _shared(session, out))
    return out

"""A live Patient's NHS number is unique, and the database enforces it.

`patient_nhs_number` holds one row per NHS number (system https://fhir.nhs.uk/Id/nhs-number) of a
live Patient, keyed by the number. The repository claims a Patient's numbers in the same transaction
as the version that carries them and frees them when the Patient is deleted or loses them, so two
writers can never both hold one. The claim is `INSERT ... ON CONFLICT DO NOTHING`: on PostgreSQL a
second writer's INSERT waits for the first transaction, then finds its row without aborting its own
transaction, which can still name the holder in the 409; SQLite has one writer at a time.

`duplicates()` reads the search index (`idx_token`), which every schema version has, so
`safeflag patients duplicates` works before the migration that creates the table, and that migration
refuses (changing nothing) with the same list while two live Patients share a number. NHS numbers in
error messages and that list are masked to their last four digits (`mask`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict
from app.storage.tables import idx_token, patient_nhs_number, resource
from app.vocabulary import NHS_NUMBER_SYSTEM

DUPLICATES_COMMAND = "safeflag patients duplicates"

_ROW = patient_nhs_number.c
# None of these reads or changes the rows app/storage/buffer.py keeps queued: they run without a flush.
_CLAIM = {
    name: dialect.insert(patient_nhs_number).on_conflict_do_nothing().returning(_ROW.nhs_number)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_FREE = delete(patient_nhs_number).where(_ROW.resource_pk == bindparam("pk"))
_HOLDER = (
    select(resource.c.res_id)
    .join(patient_nhs_number, _ROW.resource_pk == resource.c.pk)
    .where(_ROW.nhs_number == bindparam("nhs"))
)


def mask(nhs: str) -> str:
    """`9990000018` -> `******0018`: what logs, lists and error messages show of an NHS number."""
    return "*" * max(len(nhs) - 4, 0) + nhs[-4:]


def nhs_numbers(tokens: Iterable[tuple[str, str | None, str | None]]) -> list[str]:
    """The NHS numbers among a Patient's `identifier` token index rows, each once."""
    return sorted({code for param, system, code in tokens
                   if param == "identifier" and system == NHS_NUMBER_SYSTEM and code})


def _expression(doc: dict[str, Any], nhs: str) -> str:
    for i, ident in enumerate(doc.get("identifier") or []):
        if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value") == nhs:
            return f"Patient.identifier[{i}]"
    return "Patient.identifier"


def taken(nhs: str, holder: str, doc: dict[str, Any]) -> Conflict:
    """The 409 for a write that would give a second live Patient `nhs`, naming the holder."""
    return Conflict(
        f"NHS number {mask(nhs)} is already held by Patient/{holder}, and a live Patient's NHS number is "
        f"unique: to reach that Patient, create with If-None-Exist: identifier={NHS_NUMBER_SYSTEM}|<NHS number> "
        f"(the existing Patient is returned), or update Patient/{holder}",
        msg_id="SF-0415", code="duplicate", expression=_expression(doc, nhs),
    )


async def claim(session: AsyncSession, pk: int, doc: dict[str, Any], numbers: list[str], *, replace: bool) -> None:
    """Give the Patient `pk` exactly `numbers` (those of `doc`, its new content); 409 when another live
    Patient holds one. `replace`: the Patient may hold numbers already (an update)."""
    if replace:
        await session.execute(_FREE, {"pk": pk})
    if not numbers:
        return
    stmt = _CLAIM[session.get_bind().dialect.name]
    for nhs in numbers:
        for _attempt in range(3):  # the holder may be deleted between the INSERT and the look-up
            if (await session.execute(stmt, {"nhs_number": nhs, "resource_pk": pk})).first() is not None:
                break
            holder = (await session.execute(_HOLDER, {"nhs": nhs})).scalar()
            if holder is not None:
                raise taken(nhs, holder, doc)
        else:
            raise Conflict(f"NHS number {mask(nhs)} was claimed by concurrent requests; retry",
                           msg_id="SF-0409", code="duplicate", expression=_expression(doc, nhs))


async def free(session: AsyncSession, pk: int) -> None:
    """A deleted Patient holds no NHS number."""
    await session.execute(_FREE, {"pk": pk})


def live_numbers() -> Select[Any]:
    """(nhs_number, resource_pk) of every live Patient, from the search index; each pair once."""
    t = idx_token.c
    return (
        select(t.code.label("nhs_number"), t.resource_pk)
        .join(resource, resource.c.pk == t.resource_pk)
        .where(t.res_type == "Patient", t.param == "identifier", t.system == NHS_NUMBER_SYSTEM,
               t.code.is_not(None), resource.c.deleted.is_(False))
        .distinct()
    )


def duplicates(conn: Connection) -> dict[str, list[str]]:
    """NHS number -> ids of the live Patients that share it (two or more), in order."""
    held = live_numbers().subquery()
    shared = select(held.c.nhs_number).group_by(held.c.nhs_number).having(func.count() > 1)
    rows = conn.execute(
        select(held.c.nhs_number, resource.c.res_id)
        .join(resource, resource.c.pk == held.c.resource_pk)
        .where(held.c.nhs_number.in_(shared))
        .order_by(held.c.nhs_number, resource.c.res_id)
    ).all()
    out: dict[str, list[str]] = {}
    for nhs, res_id in rows:
        out.setdefault(nhs, []).append(res_id)
    return out


def listing(groups: dict[str, list[str]], *, full_numbers: bool = False) -> list[str]:
    """Lines of a plain two-column table (no terminal-width wrapping): NHS number, Patient."""
    width = max([10, *(len(n) for n in groups)])
    lines = [f"{'NHS number':<{width}}  Patient"]
    for nhs, ids in groups.items():
        lines += [f"{nhs if full_numbers else mask(nhs):<{width}}  Patient/{res_id}" for res_id in ids]
    return lines


class DuplicateNhsNumbers(RuntimeError):
    """The database holds live Patients that share an NHS number: the migration that makes NHS numbers
    unique refuses to run (and changes nothing) until a data owner has resolved them."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups
        patients = sum(len(ids) for ids in groups.values())
        lines = [
            (f"{patients} live Patients share {len(groups)} NHS number(s); a live Patient's NHS number must be "
             "unique, so this migration changed nothing:"),
            *(f"  {line}" for line in listing(groups)),
            ("Resolve each (keep one record, move references to it, delete the others as admin), then migrate "
             f"again. `{DUPLICATES_COMMAND}` lists them."),
        ]
        super().__init__("\n".join(lines))

"""Read access for the safeguarding rules: FHIR searches run inside the caller's transaction, so a
rule sees exactly what the triggering write sees (and nothing uncommitted by others)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.fhir.search.params import parse_search
from app.search.executor import run_search
from app.search.prepared import prepared
from app.storage.repository import CURRENT_BY_ID, row_to_stored
from app.storage.tables import resource
from app.stored import StoredResource

# built once, executed with parameters (building the statement costs more than running it)
_LIVE_BY_ID = CURRENT_BY_ID.where(resource.c.deleted.is_(False))
_PATIENT_BY_NHS = prepared("Patient", [("identifier", f"{NHS_NUMBER_SYSTEM}|:nhs")], count=2)


class Lookup:
    def __init__(self, session: AsyncSession, base: str) -> None:
        self.session = session
        self.base = base

    async def search(self, resource_type: str, query: list[tuple[str, str]], count: int = 100) -> list[StoredResource]:
        # `_total=none`: the rules need the matches, never the count (which would cost a second query)
        req = parse_search(resource_type, [*query, ("_count", str(count)), ("_total", "none")], base=self.base,
                           max_count=1000)
        return (await run_search(self.session, req)).matches

    async def get(self, reference: str) -> StoredResource | None:
        rtype, _, rid = reference.partition("/")
        if not rid or "/" in rid:
            return None
        row = (await self.session.execute(_LIVE_BY_ID, {"res_type": rtype, "res_id": rid})).first()
        return row_to_stored(row) if row else None

    async def patients_by_nhs_number(self, nhs: str) -> list[StoredResource]:
        """The live Patients with this NHS number: none, one, or (a duplicate record) two, no more."""
        return await _PATIENT_BY_NHS.run(self.session, nhs=nhs)

    async def patient_by_nhs_number(self, nhs: str) -> StoredResource | None:
        found = await self.patients_by_nhs_number(nhs)
        return found[0] if len(found) == 1 else None

    async def resolve_subject(self, subject: dict[str, Any] | None) -> StoredResource | None:
        """A subject given by reference, or by NHS-number identifier only."""
        found = await self.subject_matches(subject)
        return found[0] if len(found) == 1 else None

    async def subject_matches(self, subject: dict[str, Any] | None) -> list[StoredResource]:
        """The live Patients a subject may stand for: by reference one or none; by NHS-number identifier
        none, one, or two (a duplicate record: then it stands for neither)."""
        if not isinstance(subject, dict):
            return []
        ref = subject.get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            found = await self.get(ref)
            return [found] if found is not None else []
        ident = subject.get("identifier")
        if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER_SYSTEM and ident.get("value"):
            return await self.patients_by_nhs_number(str(ident["value"]))
        return []

    async def organization_of(self, reference: dict[str, Any] | None) -> str | None:
        """The team (Organization reference) of a Task owner or notice recipient: the Organization
        itself, a PractitionerRole's `organization`, or the organisation of a Practitioner's first role."""
        ref = (reference or {}).get("reference")
        if not isinstance(ref, str):
            return None
        if ref.startswith("Organization/"):
            return ref
        roles: list[StoredResource] = []
        if ref.startswith("PractitionerRole/"):
            role = await self.get(ref)
            roles = [role] if role is not None else []
        elif ref.startswith("Practitioner/"):
            roles = await self.search("PractitionerRole", [("practitioner", ref), ("_sort", "_id")], count=1)
        org = ((roles[0].content if roles else {}).get("organization") or {}).get("reference")
        return org if isinstance(org, str) else None

"""What the governance report reads: the month's records with the organisation
that wrote them, when Tasks were first completed, when notices were first delivered, and which
organisations a reference stands for. Read-only; selections use the shared search definitions
(`where_clause`), so "category", "sent", "date" mean here exactly what they mean in a search.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.fhir.search.dates import parse_range
from app.fhir.search.params import parse_search
from app.safeguarding.referral_rules import local_ref
from app.search.sql import where_clause
from app.storage.notify_tables import notification
from app.storage.tables import idx_reference, resource, resource_version

CHUNK = 500  # ids per IN list: far below the bind-parameter limits of SQLite and PostgreSQL


@dataclass(frozen=True)
class Row:
    id: str
    content: dict[str, Any]
    created_by_org: str | None


def chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), CHUNK):
        yield list(ids[i : i + CHUNK])


def instant(text: Any) -> datetime | None:
    """The start of a FHIR date/dateTime/instant as naive UTC (what the report compares), or None."""
    rng = parse_range(text) if isinstance(text, str) else None
    return rng[0] if rng else None


def fhir_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class ReportData:
    def __init__(self, session: AsyncSession, base: str) -> None:
        self.session = session
        self.base = base
        self._orgs: dict[str, frozenset[str]] = {}

    async def rows(self, rtype: str, query: list[tuple[str, str]], extra: Iterable[Any] = ()) -> list[Row]:
        """Current, not deleted, resources matching the search `query` (and `extra` conditions)."""
        req = parse_search(rtype, query, base=self.base)
        stmt = (
            select(resource.c.res_id, resource.c.content, resource.c.created_by_org)
            .where(*where_clause(req, resource), *extra)
            .order_by(resource.c.pk)
        )
        return [Row(rid, content, org) for rid, content, org in (await self.session.execute(stmt)).all()]

    async def between(self, rtype: str, query: list[tuple[str, str]], param: str, start: datetime,
                      end: datetime) -> list[tuple[Row, datetime]]:
        """Rows whose date `param` starts in [start, end), with that start."""
        found = await self.rows(rtype, [*query, (param, f"ge{fhir_time(start)}"), (param, f"lt{fhir_time(end)}")])
        out = []
        for row in found:
            at = instant(row.content.get(param))
            if at is not None and start <= at < end:
                out.append((row, at))
        return out

    async def created_between(self, rtype: str, query: list[tuple[str, str]], start: datetime,
                              end: datetime) -> list[tuple[Row, datetime]]:
        """Rows whose first version was stored in [start, end), with that time."""
        v = resource_version.c
        first = select(v.resource_pk, v.last_updated).where(
            v.res_type == rtype, v.version_id == 1, v.last_updated >= start, v.last_updated < end
        ).subquery()
        req = parse_search(rtype, query, base=self.base)
        stmt = (
            select(resource.c.res_id, resource.c.content, resource.c.created_by_org, first.c.last_updated)
            .join(first, first.c.resource_pk == resource.c.pk)
            .where(*where_clause(req, resource))
            .order_by(resource.c.pk)
        )
        return [(Row(rid, c, org), at) for rid, c, org, at in (await self.session.execute(stmt)).all()]

    async def referring(self, rtype: str, query: list[tuple[str, str]], param: str, target_type: str,
                        ids: Sequence[str]) -> list[Row]:
        """Rows of `rtype` matching `query` whose reference `param` points at one of `ids`."""
        r = idx_reference.c
        out: list[Row] = []
        for part in chunks(sorted(set(ids))):
            pks = select(r.resource_pk).where(r.res_type == rtype, r.param == param, r.target_type == target_type,
                                              r.target_id.in_(part))
            out += await self.rows(rtype, query, [resource.c.pk.in_(pks)])
        return out

    async def first_completed(self, task_ids: Sequence[str]) -> dict[str, datetime]:
        """Task id -> when it was first stored with status `completed` (its history, not a client field)."""
        v = resource_version.c
        out: dict[str, datetime] = {}
        for part in chunks(sorted(set(task_ids))):
            stmt = (
                select(v.res_id, v.last_updated, v.content)
                .where(v.res_type == "Task", v.res_id.in_(part), v.deleted.is_(False))
                .order_by(v.res_id, v.version_id)
            )
            for rid, at, content in (await self.session.execute(stmt)).all():
                if rid not in out and (content or {}).get("status") == "completed":
                    out[rid] = at
        return out

    async def first_delivered(self, communication_ids: Sequence[str]) -> dict[str, datetime]:
        """Communication id -> the first `delivered_at` among its notification rows (any subscription)."""
        n = notification.c
        out: dict[str, datetime] = {}
        for part in chunks(sorted(set(communication_ids))):
            stmt = (
                select(n.focus_id, func.min(n.delivered_at))
                .where(and_(n.focus_type == "Communication", n.focus_id.in_(part), n.delivered_at.is_not(None)))
                .group_by(n.focus_id)
            )
            out.update({fid: at for fid, at in (await self.session.execute(stmt)).all()})
        return out

    async def organisations(self, references: Iterable[Any], created_by_org: str | None) -> frozenset[str]:
        """The organisations a record is "of" (as the access policy reads it): the one that wrote it, and those it
        names directly or through their PractitionerRoles / Practitioners / CareTeams."""
        out = {created_by_org} if created_by_org else set()
        for value in references:
            ref = local_ref(value, self.base)
            if ref:
                out |= await self._orgs_of(ref)
        return frozenset(out)

    async def _orgs_of(self, ref: str) -> frozenset[str]:
        if ref in self._orgs:
            return self._orgs[ref]
        rtype = ref.partition("/")[0]
        found: set[str] = set()
        if rtype == "Organization":
            found.add(ref)
        elif rtype == "PractitionerRole":
            for row in await self.rows("PractitionerRole", [("_id", ref.partition("/")[2])]):
                org = local_ref(row.content.get("organization"), self.base, "Organization")
                found |= {org} if org else set()
        elif rtype == "Practitioner":
            for row in await self.rows("PractitionerRole", [("practitioner", ref)]):
                org = local_ref(row.content.get("organization"), self.base, "Organization")
                found |= {org} if org else set()
        elif rtype == "CareTeam":
            for row in await self.rows("CareTeam", [("_id", ref.partition("/")[2])]):
                for managing in row.content.get("managingOrganization") or []:
                    org = local_ref(managing, self.base, "Organization")
                    found |= {org} if org else set()
        self._orgs[ref] = frozenset(found)
        return self._orgs[ref]

    async def names(self, orgs: Iterable[str]) -> dict[str, str]:
        ids = sorted({o.partition("/")[2] for o in orgs})
        out: dict[str, str] = {}
        for part in chunks(ids):
            for row in await self.rows("Organization", [("_id", ",".join(part))]):
                if isinstance(row.content.get("name"), str):
                    out[f"Organization/{row.id}"] = row.content["name"]
        return out

"""The only writer.

Every change goes through `Repository`: the new current row, its version row and its search-index
rows are written in the caller's transaction. The repository never commits; the request (or a
dispatcher batch) owns the transaction. What it returns (`StoredResource`, `VersionRecord`) and the
index rows it is given are plain data in `app/stored.py`, shared with the FHIR toolkit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict
from app.storage import buffer, nhs_numbers
from app.storage.buffer import READS_MEMO, defer
from app.storage.locks import advisory_lock, on_postgresql
from app.storage.notify_tables import outbox_event
from app.storage.tables import idx_date, idx_reference, idx_string, idx_token, resource, resource_version
from app.stored import IndexRows, StoredResource, VersionRecord, format_instant


class Clock(Protocol):
    def now(self) -> datetime: ...


class IdSource(Protocol):
    def new_id(self) -> str: ...


Indexer = Callable[[str, dict[str, Any]], IndexRows]
# Validates a resource the server wrote itself before it is stored (app/interactions/server_writes.py); raises
ServerWriteCheck = Callable[[str, dict[str, Any]], None]


def utc_ms(ts: datetime) -> datetime:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.replace(microsecond=(ts.microsecond // 1000) * 1000)


def stamp(content: dict[str, Any], res_id: str, version_id: int, ts: datetime) -> dict[str, Any]:
    """Return the resource with server-set `id` and `meta`, `resourceType`, `id`, `meta` first."""
    meta = {k: v for k, v in (content.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    meta = {"versionId": str(version_id), "lastUpdated": format_instant(ts), **meta}
    out: dict[str, Any] = {"resourceType": content["resourceType"], "id": res_id, "meta": meta}
    for key, value in content.items():
        if key not in out:
            out[key] = value
    return out


_CURRENT_COLS = (
    resource.c.pk,
    resource.c.res_type,
    resource.c.res_id,
    resource.c.version_id,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.content,
    resource.c.created_by_org,
)


def row_to_stored(row: Sequence[Any]) -> StoredResource:
    return StoredResource(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] if len(row) > 7 else None)


def current_select() -> Select[Any]:
    return select(*_CURRENT_COLS)


# Statements built once and executed with parameters: building `insert(t).values(...)` per call cost
# more CPU than executing it (README "Benchmarks"). SQLAlchemy caches their compiled SQL as usual.
# A new or changed `resource` row leaves the queued rows (app/storage/buffer.py) queued: it reads none of them.
_INSERT_RESOURCE = insert(resource).returning(resource.c.pk)
_INSERT_VERSION = insert(resource_version)
_INSERT_OUTBOX = insert(outbox_event)
_INSERT_INDEX = {t.name: insert(t) for t in (idx_token, idx_string, idx_reference, idx_date)}
_DELETE_INDEX = [delete(t).where(t.c.resource_pk == bindparam("pk")) for t in (idx_token, idx_string, idx_reference, idx_date)]
_BUMP = (
    update(resource)
    .where(resource.c.pk == bindparam("b_pk"), resource.c.version_id == bindparam("b_vid"))
    .values(version_id=bindparam("version_id"), last_updated=bindparam("last_updated"),
            deleted=bindparam("deleted"), content=bindparam("content"))
)
CURRENT_BY_ID = current_select().where(
    resource.c.res_type == bindparam("res_type"), resource.c.res_id == bindparam("res_id")
)
# PostgreSQL: the current row, locked until the transaction ends (SQLite renders no FOR UPDATE)
CURRENT_FOR_UPDATE = CURRENT_BY_ID.with_for_update()


class Repository:
    """Reads and writes of one transaction (`session`'s). A write's version, index and outbox rows are
    queued and go out at `flush()` (app/storage/buffer.py): the unit of work calls it before COMMIT,
    and whoever reads a queued table in the same transaction calls it before reading."""

    def __init__(
        self, session: AsyncSession, *, clock: Clock, ids: IdSource, indexer: Indexer,
        check: ServerWriteCheck | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.ids = ids
        self.indexer = indexer
        self.check = check  # run on every create/update not marked `validated` (the server's own writes)

    async def flush(self, *, reading: Collection[str] | None = None) -> None:
        """Write the queued version, index and outbox rows now (app/storage/buffer.py); `reading`: only when
        some are for one of these tables, which the caller is about to read."""
        await buffer.flush(self.session, reading=reading)

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A savepoint that keeps the rows queued before it and drops those queued in it if it fails."""
        return buffer.savepoint(self.session)

    # -- reads -------------------------------------------------------------------------------
    async def get(self, resource_type: str, res_id: str) -> StoredResource | None:
        row = (await self.session.execute(CURRENT_BY_ID, {"res_type": resource_type, "res_id": res_id})).first()
        return row_to_stored(row) if row else None

    async def get_for_write(self, resource_type: str, res_id: str) -> StoredResource | None:
        """The current resource, for a write that decides on it (If-Match, the next version): on
        PostgreSQL a concurrent writer of the same resource waits here until this transaction ends,
        then reads what it wrote, so writes of one resource run one after another as on SQLite (a
        stale If-Match is 412, never a lost race). A resource not stored yet is locked by its id
        (an advisory lock), so that two PUTs creating it do the same."""
        params = {"res_type": resource_type, "res_id": res_id}
        row = (await self.session.execute(CURRENT_FOR_UPDATE, params)).first()
        if row is None and on_postgresql(self.session):
            await advisory_lock(self.session, f"{resource_type}/{res_id}")
            row = (await self.session.execute(CURRENT_FOR_UPDATE, params)).first()
        return row_to_stored(row) if row else None

    async def get_version(self, resource_type: str, res_id: str, version_id: int) -> VersionRecord | None:
        await self.flush()
        v = resource_version.c
        stmt = select(v.res_type, v.res_id, v.version_id, v.last_updated, v.method, v.content).where(
            v.res_type == resource_type, v.res_id == res_id, v.version_id == version_id
        )
        row = (await self.session.execute(stmt)).first()
        return VersionRecord(*row) if row else None

    async def history(
        self,
        resource_type: str | None,
        res_id: str | None,
        *,
        since: datetime | None,
        at: datetime | None = None,
        limit: int,
        offset: int,
        restrict: Sequence[Any] = (),
    ) -> tuple[list[VersionRecord], int]:
        """Versions newest first; `restrict` holds access conditions on the current `resource` row."""
        await self.flush()
        v = resource_version.c
        conds: list[Any] = []
        if restrict:
            conds.append(
                resource_version.c.resource_pk.in_(select(resource.c.pk).where(*restrict))
            )
        if resource_type is not None:
            conds.append(v.res_type == resource_type)
        if res_id is not None:
            conds.append(v.res_id == res_id)
        if since is not None:
            conds.append(v.last_updated >= since)
        if at is not None:
            conds.append(v.last_updated <= at)
        total = (await self.session.execute(select(func.count()).select_from(resource_version).where(*conds))).scalar_one()
        stmt = (
            select(v.res_type, v.res_id, v.version_id, v.last_updated, v.method, v.content)
            .where(*conds)
            .order_by(v.last_updated.desc(), v.pk.desc())
            .limit(limit)
            .offset(offset)
        )
        rows = (await self.session.execute(stmt)).all()
        return [VersionRecord(*r) for r in rows], int(total)

    # -- writes ------------------------------------------------------------------------------
    def new_id(self) -> str:
        return self.ids.new_id()

    def _now(self) -> datetime:
        return utc_ms(self.clock.now())

    async def create(
        self,
        resource_type: str,
        content: dict[str, Any],
        *,
        res_id: str | None = None,
        org: str | None = None,
        method: str = "POST",
        now: datetime | None = None,
        validated: bool = False,
    ) -> StoredResource:
        """Insert version 1 of a new resource (server id unless `res_id` is given). `validated`: the
        content passed the API's validation already; anything else is the server's own and is checked."""
        res_id = res_id or self.new_id()
        ts = utc_ms(now) if now is not None else self._now()
        doc = stamp(content, res_id, 1, ts)
        if self.check is not None and not validated:
            self.check(resource_type, doc)
        try:
            pk = (
                await self.session.execute(
                    _INSERT_RESOURCE,
                    {"res_type": resource_type, "res_id": res_id, "version_id": 1, "last_updated": ts,
                     "deleted": False, "content": doc, "created_by_org": org},
                )
            ).scalar_one()
        except IntegrityError as exc:
            raise Conflict(
                f"{resource_type}/{res_id} was created by a concurrent request", msg_id="SF-0409"
            ) from exc
        await self._write_version(pk, resource_type, res_id, 1, ts, method, doc)
        await self._write_index(pk, resource_type, doc, replace=False)
        await self._write_outbox(resource_type, res_id, 1, "create", ts)
        return StoredResource(pk, resource_type, res_id, 1, ts, False, doc, org)

    async def update(
        self, current: StoredResource, content: dict[str, Any], *, validated: bool = False
    ) -> StoredResource:
        """Write version n+1 over `current`; 409 when another writer got there first. `validated` as
        for `create`."""
        vid = current.version_id + 1
        ts = self._now()
        doc = stamp(content, current.id, vid, ts)
        if self.check is not None and not validated:
            self.check(current.resource_type, doc)
        await self._bump(current, vid, ts, deleted=False, content=doc)
        await self._write_version(current.pk, current.resource_type, current.id, vid, ts, "PUT", doc)
        await self._clear_index(current.pk)
        await self._write_index(current.pk, current.resource_type, doc, replace=True)
        await self._write_outbox(current.resource_type, current.id, vid, "update", ts)
        return StoredResource(current.pk, current.resource_type, current.id, vid, ts, False, doc,
                              current.created_by_org)

    async def delete(self, current: StoredResource) -> StoredResource:
        """Soft delete: a new version marked deleted; the index rows go, history stays."""
        vid = current.version_id + 1
        ts = self._now()
        await self._bump(current, vid, ts, deleted=True, content=current.content)
        await self._write_version(current.pk, current.resource_type, current.id, vid, ts, "DELETE", None)
        await self._clear_index(current.pk)
        if current.resource_type == "Patient":  # a deleted Patient frees its NHS numbers
            await nhs_numbers.free(self.session, current.pk)
        await self._write_outbox(current.resource_type, current.id, vid, "delete", ts)
        return StoredResource(current.pk, current.resource_type, current.id, vid, ts, True, current.content,
                              current.created_by_org)

    async def _bump(
        self, current: StoredResource, vid: int, ts: datetime, *, deleted: bool, content: dict[str, Any]
    ) -> None:
        result = await self.session.execute(
            _BUMP,
            {"b_pk": current.pk, "b_vid": current.version_id, "version_id": vid, "last_updated": ts,
             "deleted": deleted, "content": content},
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(
                f"{current.resource_type}/{current.id} was changed by a concurrent request; "
                "read it again and retry",
                msg_id="SF-0409",
            )

    async def _write_version(
        self, pk: int, rtype: str, rid: str, vid: int, ts: datetime, method: str, doc: dict[str, Any] | None
    ) -> None:
        """Every write of a record (create, update, delete) writes its version: what the transaction read
        and kept (`READS_MEMO`) may no longer hold."""
        self.session.info.pop(READS_MEMO, None)
        defer(self.session, _INSERT_VERSION, [
            {"resource_pk": pk, "res_type": rtype, "res_id": rid, "version_id": vid, "last_updated": ts,
             "deleted": method == "DELETE", "method": method, "content": doc}
        ])

    async def _write_outbox(self, rtype: str, rid: str, vid: int, action: str, ts: datetime) -> None:
        """The transactional outbox row; NOTIFY wakes dispatchers at commit."""
        defer(self.session, _INSERT_OUTBOX, [
            {"res_type": rtype, "res_id": rid, "version_id": vid, "action": action, "occurred_at": ts,
             "processed_at": None}
        ])
        # PostgreSQL: the outbox INSERT's own trigger NOTIFYs dispatchers at commit (migration 0004);
        # this flag wakes the in-process dispatcher.
        self.session.info["outbox"] = True

    async def _clear_index(self, pk: int) -> None:
        await self.flush()  # index rows queued for `pk` earlier in this transaction go too
        for stmt in _DELETE_INDEX:
            await self.session.execute(stmt, {"pk": pk})

    async def _write_index(self, pk: int, rtype: str, doc: dict[str, Any], *, replace: bool) -> None:
        """The search-index rows of `doc`; for a Patient also its NHS numbers, unique among live Patients
        (409 otherwise: app/storage/nhs_numbers.py). `replace`: `pk` had index rows before (an update)."""
        rows = self.indexer(rtype, doc)
        if rtype == "Patient":
            await nhs_numbers.claim(self.session, pk, doc, nhs_numbers.nhs_numbers(rows.tokens), replace=replace)
        base = {"resource_pk": pk, "res_type": rtype}
        if rows.tokens:
            defer(self.session, _INSERT_INDEX["idx_token"],
                  [{**base, "param": p, "system": s, "code": c} for p, s, c in rows.tokens])
        if rows.strings:
            defer(self.session, _INSERT_INDEX["idx_string"],
                  [{**base, "param": p, "norm": n, "exact": e} for p, n, e in rows.strings])
        if rows.references:
            defer(self.session, _INSERT_INDEX["idx_reference"], [
                {**base, "param": p, "target_type": tt, "target_id": ti, "url": u, "ident_system": isys,
                 "ident_value": ival}
                for p, tt, ti, u, isys, ival in rows.references
            ])
        if rows.dates:
            defer(self.session, _INSERT_INDEX["idx_date"],
                  [{**base, "param": p, "low": lo, "high": hi} for p, lo, hi in rows.dates])

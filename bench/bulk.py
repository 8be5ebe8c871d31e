"""Bulk rows for PostgreSQL: exactly the rows `app/storage/repository.py` writes, loaded with COPY.

The content is stamped with the repository's own `stamp`/`utc_ms` and indexed with the server's own
indexer (`make_indexer`), and `self_check` proves the equivalence on every run: it writes a sample
through the real `FhirService` (validation included) in a transaction, builds the same sample here,
compares every row of every table, and rolls back. An ended Flag is what the API would leave
behind: version 1 created `active` (POST), version 2 `inactive` with its status reason (PUT).
Outbox rows are not written: a seed has no subscriber to notify (as if the dispatcher had run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from app.storage.repository import stamp, utc_ms

# column order of each COPY (the tables of app/storage/tables.py, minus serial pks of index tables)
COLUMNS: dict[str, tuple[str, ...]] = {
    "resource": (
        "pk",
        "res_type",
        "res_id",
        "version_id",
        "last_updated",
        "deleted",
        "content",
        "created_by_org",
    ),
    "resource_version": (
        "pk",
        "resource_pk",
        "res_type",
        "res_id",
        "version_id",
        "last_updated",
        "deleted",
        "method",
        "content",
    ),
    "idx_token": ("resource_pk", "res_type", "param", "system", "code"),
    "idx_string": ("resource_pk", "res_type", "param", "norm", "exact"),
    "idx_reference": (
        "resource_pk",
        "res_type",
        "param",
        "target_type",
        "target_id",
        "url",
        "ident_system",
        "ident_value",
    ),
    "idx_date": ("resource_pk", "res_type", "param", "low", "high"),
}


@dataclass
class Batch:
    """Rows for COPY, table -> list of tuples in COLUMNS order. JSON is kept as its text."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {t: [] for t in COLUMNS})
    next_pk: int = 1
    next_vpk: int = 1

    def _index(self, indexer: Any, pk: int, rtype: str, doc: dict[str, Any]) -> None:
        ix = indexer(rtype, doc)
        self.rows["idx_token"].extend((pk, rtype, *t) for t in ix.tokens)
        self.rows["idx_string"].extend((pk, rtype, *s) for s in ix.strings)
        self.rows["idx_reference"].extend((pk, rtype, *r) for r in ix.references)
        self.rows["idx_date"].extend((pk, rtype, *d) for d in ix.dates)

    def add(
        self, indexer: Any, rtype: str, res_id: str, versions: list[tuple[dict[str, Any], datetime]]
    ) -> int:
        """One resource with its versions [(body, time)...]: v1 POST, later ones PUT; returns its pk."""
        pk = self.next_pk
        self.next_pk += 1
        doc: dict[str, Any] = {}
        ts = versions[0][1]
        for vid, (body, when) in enumerate(versions, start=1):
            ts = utc_ms(when)
            doc = stamp(body, res_id, vid, ts)
            self.rows["resource_version"].append(
                (
                    self.next_vpk,
                    pk,
                    rtype,
                    res_id,
                    vid,
                    ts,
                    False,
                    "POST" if vid == 1 else "PUT",
                    orjson.dumps(doc).decode(),
                )
            )
            self.next_vpk += 1
        self.rows["resource"].append(
            (pk, rtype, res_id, len(versions), ts, False, orjson.dumps(doc).decode(), None)
        )
        self._index(indexer, pk, rtype, doc)
        return pk

    def size(self) -> int:
        return sum(len(v) for v in self.rows.values())

    def clear(self) -> None:
        for v in self.rows.values():
            v.clear()


async def copy_batch(conn: asyncpg.Connection, batch: Batch) -> None:
    async with conn.transaction():
        for table, cols in COLUMNS.items():
            if batch.rows[table]:
                await conn.copy_records_to_table(table, records=batch.rows[table], columns=list(cols))
    batch.clear()


async def fix_sequences(conn: asyncpg.Connection) -> None:
    for table in ("resource", "resource_version"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'), (SELECT coalesce(max(pk), 1) FROM {table}))"
        )


# -- the equivalence check ---------------------------------------------------------------------------------


class _FixedIds:
    def __init__(self, ids: list[str]) -> None:
        self.ids = list(ids)

    def new_id(self) -> str:
        return self.ids.pop(0)


class _StepClock:
    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


class _Rollback(Exception):
    pass


def _normal(table: str, row: tuple[Any, ...], pk_map: dict[int, int]) -> tuple[Any, ...]:
    """A row with database pks replaced by their sample position, JSON parsed, for comparison."""
    cols = COLUMNS[table]
    out = []
    for col, value in zip(cols, row, strict=True):
        if col == "resource_pk" or (col == "pk" and table == "resource"):
            value = pk_map.get(value, value)
        elif col == "pk":
            continue  # version pks are assigned by sequence order; the (resource, version) pair is compared
        elif col == "content" and isinstance(value, str):
            value = orjson.loads(value)
        out.append(value)
    return tuple(out)


async def self_check(ctx: Any, dsn: str, sample: list[tuple[str, str, list[dict[str, Any]]]]) -> int:
    """Write `sample` [(type, id, [v1 body, v2 body...])] through the real service, read every row back,
    compare with Batch's rows for the same input, roll back. Raises AssertionError on any difference."""
    start = datetime(2026, 1, 5, 9, 0, 0)
    ctx.clock, ctx.ids = _StepClock(start), _FixedIds([rid for _t, rid, _v in sample])
    written: dict[str, list[tuple[Any, ...]]] = {}
    try:
        async with ctx.unit_of_work() as svc:
            pks = []
            for rtype, rid, versions in sample:
                out = await svc.create(rtype, versions[0])
                assert out.status == 201 and out.stored is not None and out.stored.id == rid, out
                for body in versions[1:]:
                    upd = await svc.update(rtype, rid, {**body, "id": rid})
                    assert upd.status == 200, upd
                pks.append(out.stored.pk)
            await svc.repo.flush()  # queued rows (app/storage/buffer.py): the raw reads below bypass the session
            conn = await svc.session.connection()
            raw = await conn.get_raw_connection()
            pg = raw.driver_connection
            for table, cols in COLUMNS.items():
                key = "pk" if table == "resource" else "resource_pk"
                recs = await pg.fetch(
                    f"SELECT {', '.join(cols)} FROM {table} WHERE {key} = any($1::bigint[])", pks
                )
                written[table] = [tuple(r) for r in recs]
            raise _Rollback
    except _Rollback:
        pass
    # the same version times as the service used (how often it reads its clock is not ours to know)
    cols = COLUMNS["resource_version"]
    when = {
        (r[cols.index("res_id")], r[cols.index("version_id")]): r[cols.index("last_updated")]
        for r in written["resource_version"]
    }
    batch = Batch()
    from app.fhir.search.definitions import make_indexer

    indexer = make_indexer(ctx.settings.fhir_base)
    for rtype, rid, versions in sample:
        batch.add(
            indexer, rtype, rid, [(body, when[(rid, vid)]) for vid, body in enumerate(versions, start=1)]
        )
    db_map = {pk: i + 1 for i, pk in enumerate(pks)}
    compared = 0
    for table in COLUMNS:
        got = sorted((_normal(table, r, db_map) for r in written[table]), key=repr)
        want = sorted((_normal(table, r, {}) for r in batch.rows[table]), key=repr)
        assert got == want, f"bulk rows differ from the repository's in {table}:\n{got}\n!=\n{want}"
        compared += len(got)
    return compared

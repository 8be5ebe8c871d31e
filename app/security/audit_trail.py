"""Appending to the tamper-evident audit trail (`audit_event`, app/storage/audit_tables.py), in the
transaction of the access it records.

Why lanes: a single hash chain needs its previous row, so every audited transaction on PostgreSQL would
wait for the one before it to commit (a lock held from the audit write to the end of the transaction:
reads and writes of unrelated records queued behind each other). Instead each writer appends to a
chain of its own. A lane is owned by one database connection at a time: on PostgreSQL the first audited
transaction on a pooled connection takes the lowest free lane with a session-level advisory lock
(`pg_try_advisory_lock`), held until that connection closes, and remembers it in the connection's
`info` (which SQLAlchemy clears when it reconnects). Only that connection writes the lane, one
transaction at a time, so reading the lane's last row (the previous hash) needs no lock and sees what
its own earlier transactions committed; a rolled-back transaction leaves no row and the next one links
to the last committed row. Concurrent requests use different connections, so different lanes: nothing
waits. When a connection closes its lane becomes free and the next connection to take it continues it.
SQLite has one writer connection and writes lane 0 (its write lock already orders transactions).

Within a transaction the lane's last position and hash are kept in the session (`session.info`) so
that several audit rows of one transaction cost one lookup; they are forgotten when any transaction or
savepoint ends (a rolled-back savepoint drops its queued rows, app/storage/buffer.py).

**The lane's last row, kept per connection (PostgreSQL).** Since only the connection that holds a
lane writes it, what that connection committed last is the lane's last row until it writes again. So
when a transaction that appended commits, its last row's position and hash are kept in the
connection's `info` (`TAIL_KEY`), and the connection's next audited transaction continues from them
without reading the lane: one statement fewer per audited request. It is safe because:
- *concurrent writers* use other connections, hence other lanes: nobody else appends to this one while
  the advisory lock is held (and the table's unique (lane, position) key refuses a row that would
  share a place, so even a pooler that broke the one-session rule fails loudly instead of forking);
- *rollbacks*: the kept row is taken out of `info` by the first append of a transaction and put back
  only by that transaction's commit (`after_commit` of the outermost transaction), with the head the
  transaction ended on, and only when none of its audit rows is still queued; a transaction or a savepoint that rolls back leaves nothing kept, and the next
  transaction reads the lane again, so nothing ever links to a row that never committed;
- *the lane lock ending*: the lock lasts as long as the database session; when the session ends (closed
  by the pool, the server, a network failure) SQLAlchemy clears the connection's `info` when it replaces
  it, so the kept row goes with the lane: a new session takes a lane afresh and reads its last row;
- *archiving*: a lane cut up to its last row (app/security/audit_archive.py) continues from the cut,
  whether from the kept row or read from `audit_event_cut` (`_LAST_IN_LANE` reads both).
SQLite keeps nothing: another process (the command line) may append to lane 0 between two
transactions of the server's connection, so it reads the lane's last row in each audited transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, desc, event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from app.fhir.search.definitions import index_values, params_for
from app.storage.audit_tables import (
    CODED_PARAMS,
    GENESIS,
    LINKED_PARAMS,
    audit_event,
    audit_event_cut,
    audit_event_ref,
    audit_row,
    coding_key,
)
from app.storage.buffer import PENDING, defer, flush
from app.storage.locks import on_postgresql
from app.storage.repository import Repository, stamp, utc_ms
from app.stored import StoredResource

LANE_KEY = "safeflag.audit_lane"  # in the connection's info: the lane this connection owns
HEAD_KEY = "safeflag.audit_head"  # in the session's info: (lane, position, hash) of the last row written
TAIL_KEY = "safeflag.audit_tail"  # in the connection's info (PostgreSQL): (lane, position, hash) committed last
OWNER_KEY = "safeflag.audit_tail_owner"  # in the session's info: the connection info its commit keeps the head in
LANE_LOCK_CLASS = 0x5AFE  # first key of the two-key advisory locks that own lanes
MAX_LANES = 4096

_INSERT = insert(audit_event)
_INSERT_REFS = insert(audit_event_ref)
# the lane's last row, or where it was cut when archiving removed all of it: it reads no queued row of
# the trail (append() flushes those first)
_LAST_ROW = (select(audit_event.c.position, audit_event.c.hash).where(audit_event.c.lane == bindparam("lane"))
             .order_by(audit_event.c.position.desc()).limit(1).subquery())
_CUT = select(audit_event_cut.c.position, audit_event_cut.c.hash).where(audit_event_cut.c.lane == bindparam("lane"))
_LAST_IN_LANE = select(_LAST_ROW.c.position, _LAST_ROW.c.hash).union_all(_CUT).order_by(desc("position")).limit(1)
_TRY_LANE = text("SELECT pg_try_advisory_lock(:cls, :lane)")


async def _lane(session: AsyncSession) -> tuple[int, dict[Any, Any] | None]:
    """The lane of this session's connection (taken on first use) and that connection's `info`
    (PostgreSQL; SQLite: lane 0 and no `info`)."""
    if not on_postgresql(session):
        return 0, None
    conn = await session.connection()
    info = conn.info
    lane = info.get(LANE_KEY)
    if lane is None:
        for candidate in range(MAX_LANES):
            if (await session.execute(_TRY_LANE,
                                      {"cls": LANE_LOCK_CLASS, "lane": candidate})).scalar_one():
                lane = info[LANE_KEY] = candidate
                break
        else:
            raise RuntimeError(f"no free audit lane among {MAX_LANES}")
    return int(lane), info


def linked_refs(content: dict[str, Any], event_id: str, base: str) -> list[dict[str, str]]:
    """The `audit_event_ref` rows of one AuditEvent: each `Type/id` its `patient`, `entity` and `agent`
    search parameters read (the same extractors as every other search)."""
    params = params_for("AuditEvent")
    memo: dict[Any, Any] = {}  # `patient` reads the elements `entity` and `agent` read: extract each once
    return [{"param": name, "ref": f"{rtype}/{rid}", "event_id": event_id}
            for name in LINKED_PARAMS for rtype, rid, *_ in index_values(params[name], content, base, memo)
            if rtype is not None and rid is not None]


def coded_refs(content: dict[str, Any], event_id: str) -> list[dict[str, str]]:
    """The `audit_event_ref` rows of one AuditEvent's `type` and `subtype` codings (read with the same
    extractors as every other search): the code alone under the parameter's name, and the system and
    code under the name and `|`. Each row once."""
    params = params_for("AuditEvent")
    rows: dict[tuple[str, str], None] = {}
    for name in CODED_PARAMS:
        for system, code, *_ in index_values(params[name], content, ""):
            if code is not None:
                rows[(name, code)] = None
            if system is not None or code is not None:
                rows[(name + "|", coding_key(system, code))] = None
    return [{"param": param, "ref": ref, "event_id": event_id} for param, ref in rows]


def search_rows(content: dict[str, Any], event_id: str, base: str) -> list[dict[str, str]]:
    """Every `audit_event_ref` row of one AuditEvent: its references, then its codings."""
    return linked_refs(content, event_id, base) + coded_refs(content, event_id)


async def append(session: AsyncSession, content: dict[str, Any], *, event_id: str, recorded: datetime,
                 org: str | None, base: str = "") -> None:
    """Queue the audit row of `content` (a stored AuditEvent) at the end of this connection's lane, and
    its reference rows."""
    head = session.info.get(HEAD_KEY)
    if head is None:
        if session.info.get(PENDING, {}).get(_INSERT):  # never read past a queued row of the trail
            await flush(session)
        lane, info = await _lane(session)
        head = info.pop(TAIL_KEY, None) if info is not None else None
        if head is None:
            last = (await session.execute(_LAST_IN_LANE, {"lane": lane})).first()
            head = (lane, 0, GENESIS) if last is None else (lane, int(last[0]), str(last[1]))
        if info is not None:
            session.info[OWNER_KEY] = info
    lane, position, prev = head
    row = audit_row(lane, position + 1, prev, event_id, recorded, org, content)
    defer(session, _INSERT, [row])
    refs = search_rows(content, event_id, base)
    if refs:
        defer(session, _INSERT_REFS, refs)
    session.info[HEAD_KEY] = (lane, position + 1, row["hash"])


async def record(repo: Repository, event_doc: dict[str, Any], *, org: str | None, now: datetime,
                 base: str = "") -> StoredResource:
    """Store one AuditEvent in the chained trail only (read, searched and included from there): it is
    given its id and `meta` as any stored resource, and checked as the server's own writes are, but
    writes no resource, version or search-index row."""
    ts = utc_ms(now)
    doc = stamp(event_doc, repo.new_id(), 1, ts)
    if repo.check is not None:
        repo.check("AuditEvent", doc)
    await append(repo.session, doc, event_id=doc["id"], recorded=ts, org=org, base=base)
    return StoredResource(0, "AuditEvent", doc["id"], 1, ts, False, doc, org)


@event.listens_for(Session, "after_commit")
def _keep_tail(session: Session) -> None:
    """The outermost transaction committed: its connection continues from the head it ended on."""
    if session.get_nested_transaction() is not None:  # a savepoint released: the transaction goes on
        return
    info, head = session.info.pop(OWNER_KEY, None), session.info.get(HEAD_KEY)
    queued = session.info.get(PENDING, {}).get(_INSERT)  # rows that never reached the database: keep nothing
    if info is not None and head is not None and not queued:
        info[TAIL_KEY] = head


@event.listens_for(Session, "after_transaction_end")
def _forget_head(session: Session, transaction: SessionTransaction) -> None:
    session.info.pop(HEAD_KEY, None)
    if transaction.parent is None:  # rolled back (a commit took it already): the connection keeps nothing
        session.info.pop(OWNER_KEY, None)

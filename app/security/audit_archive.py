"""Archiving the start of the audit trail: the one removal of audit rows the database allows.

The trail is append-only in the database (triggers refuse UPDATE and DELETE, migration
20261206_0017). When records past their retention period are archived, the oldest rows of a lane may be
removed, but only this way: first the lane's cut is recorded in `audit_event_cut` (the last position
removed and that row's hash), then the rows up to it and their reference rows are deleted, in one
transaction. The triggers allow exactly those deletes, and the verifier (app/security/audit_verify.py)
starts the lane after the cut: the first remaining row must follow the cut's hash. Export the rows
first (docs/audit-trail.md) and take a checkpoint before the cut, so the archive can be verified too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from app.storage.audit_tables import audit_event, audit_event_cut, audit_event_ref

BATCH = 1000


def cuts(conn: Connection) -> dict[int, tuple[int, str]]:
    """Each archived lane's cut: lane -> (last position removed, its hash)."""
    c = audit_event_cut.c
    return {int(lane): (int(pos), str(digest)) for lane, pos, digest in conn.execute(select(c.lane, c.position, c.hash))}


def cut_lane(conn: Connection, lane: int, position: int, *, now: datetime) -> int:
    """Remove lane `lane`'s rows up to and including `position`; returns how many were removed. The cut
    only moves forward (a position at or before the current cut removes nothing)."""
    e = audit_event.c
    before = cuts(conn).get(lane)
    if before is not None and before[0] >= position:
        return 0
    digest = conn.execute(select(e.hash).where(e.lane == lane, e.position == position)).scalar_one_or_none()
    if digest is None:
        raise ValueError(f"lane {lane} has no row at position {position}")
    values = {"position": position, "hash": digest, "cut_at": now}
    if before is None:
        conn.execute(insert(audit_event_cut).values(lane=lane, **values))
    else:
        conn.execute(update(audit_event_cut).where(audit_event_cut.c.lane == lane).values(**values))
    removed = 0
    while ids := list(conn.execute(select(e.event_id).where(e.lane == lane, e.position <= position)
                                   .order_by(e.position).limit(BATCH)).scalars()):
        conn.execute(delete(audit_event).where(e.event_id.in_(ids)))
        conn.execute(delete(audit_event_ref).where(audit_event_ref.c.event_id.in_(ids)))
        removed += len(ids)
    return removed


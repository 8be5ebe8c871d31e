"""Emptying the audit trail of a throwaway test database through its one sanctioned removal (the database
refuses any other DELETE of audit rows: app/storage/audit_guards.py, app/security/audit_archive.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select

from app.security.audit_archive import cut_lane
from app.storage.audit_tables import audit_event


def cut_everything(conn: Connection, *, now: datetime) -> int:
    """Archive every lane up to its last row (emptying the trail); returns how many rows were removed."""
    e = audit_event.c
    heads = conn.execute(select(e.lane, func.max(e.position)).group_by(e.lane)).all()
    return sum(cut_lane(conn, int(lane), int(pos), now=now) for lane, pos in heads)

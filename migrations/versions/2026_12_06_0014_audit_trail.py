"""audit trail: the append-only, hash-chained `audit_event` table, filled with the stored AuditEvents

Every access's AuditEvent is also appended to `audit_event` (app/storage/audit_tables.py), chained by
SHA-256 hashes in lanes (app/security/audit_trail.py). The AuditEvents stored before this revision are
appended here to lane 0 in the order they were recorded (time, then the order they were stored), so an
upgraded database's whole trail verifies (`safeflag audit verify`). Later writers continue lane 0
after them.

Revision ID: 20261206_0014
Revises: 20261206_0013
Create Date: 2026-12-06 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.storage.audit_tables import GENESIS, audit_event, audit_row

revision = "20261206_0014"
down_revision = "20261206_0013"
branch_labels = None
depends_on = None

BATCH = 1000
resource = sa.table("resource", sa.column("pk"), sa.column("res_type"), sa.column("res_id"),
                    sa.column("last_updated", sa.DateTime()), sa.column("content", audit_event.c.content.type),
                    sa.column("created_by_org"))


def upgrade() -> None:
    bind = op.get_bind()
    audit_event.create(bind)
    stored = (
        sa.select(resource.c.pk, resource.c.res_id, resource.c.last_updated, resource.c.created_by_org,
                  resource.c.content)
        .where(resource.c.res_type == "AuditEvent")
        .order_by(resource.c.last_updated, resource.c.pk)
    )
    position, prev = 0, GENESIS
    last: tuple[object, int] | None = None
    while True:
        page = stored if last is None else stored.where(
            sa.or_(resource.c.last_updated > last[0],
                   sa.and_(resource.c.last_updated == last[0], resource.c.pk > last[1])))
        rows = bind.execute(page.limit(BATCH)).all()
        if not rows:
            break
        last = (rows[-1][2], rows[-1][0])
        batch = []
        for _pk, res_id, recorded, org, content in rows:
            position += 1
            row = audit_row(0, position, prev, res_id, recorded, org, content)
            prev = row["hash"]
            batch.append(row)
        bind.execute(sa.insert(audit_event), batch)


def downgrade() -> None:
    op.drop_table("audit_event")

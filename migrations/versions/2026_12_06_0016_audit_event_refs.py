"""audit trail search: every patient, entity and agent reference of each audit row (`audit_event_ref`)

AuditEvent read and search are answered from the audit trail's own table (app/security/audit_search.py).
An event can name several patients (a search that showed several children) and `entity`/`agent` match
any of its references, so each `Type/id` the `patient`, `entity` and `agent` search parameters read gets
a narrow row keyed by the event's id. The rows of the events already in the trail are copied from the
search index the AuditEvent resources had.

Each row gets `occurred`, the AuditEvent's own `recorded` instant, which `date` searches read (the
`recorded` column is when the row was stored, a few milliseconds later).

AuditEvents that were stored as resources but never appended to the trail (the web app's sign-in and
sign-out events before this revision) are appended now at the end of lane 0, in the order they were
recorded, so that nothing disappears from searches and the chains still verify.

Revision ID: 20261206_0016
Revises: 20261206_0015
Create Date: 2026-12-06 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.storage.audit_tables import GENESIS, LINKED_PARAMS, audit_event, audit_event_ref, audit_row, search_columns

revision = "20261206_0016"
down_revision = "20261206_0015"
branch_labels = None
depends_on = None

BATCH = 1000
resource = sa.table("resource", sa.column("pk"), sa.column("res_type"), sa.column("res_id"),
                    sa.column("last_updated", sa.DateTime()), sa.column("content", audit_event.c.content.type),
                    sa.column("created_by_org"))
idx_reference = sa.table("idx_reference", sa.column("resource_pk"), sa.column("res_type"), sa.column("param"),
                         sa.column("target_type", sa.String), sa.column("target_id", sa.String))


def _append_missing(bind: sa.Connection) -> None:
    """AuditEvent resources without a trail row, appended to the end of lane 0."""
    e = audit_event.c
    last = bind.execute(sa.select(e.position, e.hash).where(e.lane == 0).order_by(e.position.desc()).limit(1)).first()
    position, prev = (0, GENESIS) if last is None else (int(last[0]), str(last[1]))
    missing = (
        sa.select(resource.c.res_id, resource.c.last_updated, resource.c.created_by_org, resource.c.content)
        .where(resource.c.res_type == "AuditEvent",
               ~sa.exists().where(e.event_id == resource.c.res_id))
        .order_by(resource.c.last_updated, resource.c.pk)
        .limit(BATCH)
    )
    while rows := bind.execute(missing).all():
        batch = []
        for res_id, last_updated, org, content in rows:
            position += 1
            row = audit_row(0, position, prev, res_id, last_updated, org, content)
            prev = row["hash"]
            batch.append(row)
        bind.execute(sa.insert(audit_event), batch)


def _occurred(bind: sa.Connection) -> None:
    """The `occurred` column (the AuditEvent's own `recorded`, which `date` searches read) of the rows
    appended before it existed."""
    if "occurred" not in {c["name"] for c in sa.inspect(bind).get_columns("audit_event")}:
        op.add_column("audit_event", sa.Column("occurred", sa.DateTime(), nullable=True))
        op.create_index("ix_audit_event_occurred", "audit_event", ["occurred"])
    e = audit_event.c
    last = 0
    while rows := bind.execute(sa.select(e.seq, e.content).where(e.seq > last).order_by(e.seq).limit(BATCH)).all():
        bind.execute(sa.update(audit_event).where(e.seq == sa.bindparam("key")),
                     [{"key": seq, "occurred": search_columns(content)["occurred"]} for seq, content in rows])
        last = rows[-1][0]


def upgrade() -> None:
    bind = op.get_bind()
    _occurred(bind)
    _append_missing(bind)
    audit_event_ref.create(bind)
    r = idx_reference.c
    refs = (
        sa.select(r.param, (r.target_type + "/" + r.target_id), resource.c.res_id)
        .select_from(idx_reference.join(resource, resource.c.pk == r.resource_pk))
        .where(r.res_type == "AuditEvent", r.param.in_(LINKED_PARAMS), r.target_type.is_not(None),
               r.target_id.is_not(None))
        .distinct()
    )
    bind.execute(sa.insert(audit_event_ref).from_select(["param", "ref", "event_id"], refs))


def downgrade() -> None:
    op.drop_table("audit_event_ref")

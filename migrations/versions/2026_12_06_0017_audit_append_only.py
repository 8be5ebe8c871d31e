"""audit trail append-only in the database: triggers refuse UPDATE and DELETE of audit rows

`audit_event` and `audit_event_ref` refuse every UPDATE and DELETE on PostgreSQL and SQLite
(app/storage/audit_guards.py), except the sanctioned removal of a lane's start when records are
archived, which records the lane's cut in the new `audit_event_cut` table first
(app/security/audit_archive.py); the verifier starts an archived lane after its cut.

Revision ID: 20261206_0017
Revises: 20261206_0016
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

from alembic import op

from app.storage.audit_guards import create_statements, drop_statements
from app.storage.audit_tables import audit_event_cut

revision = "20261206_0017"
down_revision = "20261206_0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    audit_event_cut.create(bind)
    for stmt in create_statements(bind.dialect.name):
        op.execute(stmt)


def downgrade() -> None:
    bind = op.get_bind()
    for stmt in drop_statements(bind.dialect.name):
        op.execute(stmt)
    op.drop_table("audit_event_cut")

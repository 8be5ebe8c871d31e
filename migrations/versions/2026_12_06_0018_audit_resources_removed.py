"""AuditEvents no longer kept as FHIR resources: their resource, version and index rows are removed

Every AuditEvent is read, searched and included from the audit trail (`audit_event`); the copies kept
as generic resources (a `resource` row, a `resource_version` row and search-index rows each) are no
longer written nor read. This removes them, but only once every one of them is in the trail: when an
AuditEvent stored as a resource has no `audit_event` row with its id, the upgrade refuses, says how many
are missing, and changes nothing (append them to the trail first). Rows of every other type stay.

There is no way back: the downgrade leaves the trail as it is (the AuditEvents stay searchable there).

Revision ID: 20261206_0018
Revises: 20261206_0017
Create Date: 2026-12-06 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261206_0018"
down_revision = "20261206_0017"
branch_labels = None
depends_on = None

# AuditEvents stored as a resource or a version whose id the trail does not hold
MISSING = """
SELECT COUNT(DISTINCT s.res_id) FROM (
    SELECT res_id FROM resource WHERE res_type = 'AuditEvent'
    UNION ALL SELECT res_id FROM resource_version WHERE res_type = 'AuditEvent'
) s WHERE NOT EXISTS (SELECT 1 FROM audit_event a WHERE a.event_id = s.res_id)
"""
AUDIT_PKS = "SELECT pk FROM resource WHERE res_type = 'AuditEvent'"


class AuditEventsNotInTrail(RuntimeError):
    """Some AuditEvents stored as resources are missing from the trail: nothing was removed."""


def upgrade() -> None:
    bind = op.get_bind()
    missing = int(bind.execute(sa.text(MISSING)).scalar_one())
    if missing:
        raise AuditEventsNotInTrail(
            f"{missing} AuditEvent(s) stored as resources are not in the audit trail (audit_event); "
            "nothing was removed")
    inspector = sa.inspect(bind)
    # the index tables and versions, by their key to `resource` (SQLite may not enforce its cascade)
    for table in sorted(inspector.get_table_names()):
        if table != "resource" and any(c["name"] == "resource_pk" for c in inspector.get_columns(table)):
            bind.execute(sa.text(f"DELETE FROM {table} WHERE resource_pk IN ({AUDIT_PKS})"))
    bind.execute(sa.text("DELETE FROM resource_version WHERE res_type = 'AuditEvent'"))
    bind.execute(sa.text("DELETE FROM resource WHERE res_type = 'AuditEvent'"))


def downgrade() -> None:
    """Nothing to restore: the AuditEvents are in the trail."""

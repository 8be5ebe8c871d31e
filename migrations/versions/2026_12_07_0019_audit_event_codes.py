"""audit trail search: the `type` and `subtype` codings of each audit row (`audit_event_ref`)

`AuditEvent?type=...` and `?subtype=...` read rows of the audit trail's reference table instead of
every event's JSON (app/security/audit_search.py): two per coding, the code alone and the system with
the code (app/security/audit_trail.py `coded_refs`). This adds those rows for the events already in the
trail, in batches, skipping any event that has them already. `safeflag audit verify` checks them against
each event's JSON.

The downgrade leaves the rows in place: the table refuses deletes of rows whose event is in the trail
(migration 20261206_0017), and searches before this revision do not read them.

Revision ID: 20261207_0019
Revises: 20261206_0018
Create Date: 2026-12-07 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.security.audit_trail import coded_refs
from app.storage.audit_tables import CODED_PARAMS, audit_event, audit_event_ref

revision = "20261207_0019"
down_revision = "20261206_0018"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    bind = op.get_bind()
    e, r = audit_event.c, audit_event_ref.c
    last = 0
    while rows := bind.execute(sa.select(e.seq, e.event_id, e.content).where(e.seq > last).order_by(e.seq)
                               .limit(BATCH)).all():
        last = rows[-1][0]
        done = set(bind.execute(sa.select(r.event_id).where(r.param.in_(CODED_PARAMS),
                                                             r.event_id.in_([row[1] for row in rows]))).scalars())
        batch = [ref for _seq, event_id, content in rows if event_id not in done
                 for ref in coded_refs(content, event_id)]
        if batch:
            bind.execute(sa.insert(audit_event_ref), batch)


def downgrade() -> None:
    """Nothing to remove (see above)."""

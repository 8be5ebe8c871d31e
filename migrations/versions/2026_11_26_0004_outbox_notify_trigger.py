"""outbox NOTIFY trigger: PostgreSQL wakes dispatchers from the outbox INSERT itself

The writing transaction used to send `SELECT pg_notify('safeflag_outbox', '')` as a statement of its
own; a statement-level AFTER INSERT trigger does the same with no extra round trip. PostgreSQL delivers
a NOTIFY at commit and never for a rolled-back transaction, and folds duplicates within a transaction
(https://www.postgresql.org/docs/15/sql-notify.html). SQLite has no NOTIFY: nothing to do there.

Revision ID: 20261126_0004
Revises: 20261126_0003
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "20261126_0004"
down_revision = "20261126_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION safeflag_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('safeflag_outbox', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_event_notify AFTER INSERT ON outbox_event "
        "FOR EACH STATEMENT EXECUTE FUNCTION safeflag_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER outbox_event_notify ON outbox_event")
    op.execute("DROP FUNCTION safeflag_outbox_notify()")

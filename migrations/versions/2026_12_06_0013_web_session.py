"""web session: the web app's server-side sessions (app/storage/web_tables.py)

One row per browser session, keyed by the SHA-256 of its cookie's value; sign-out and the idle timeout
delete it.

Revision ID: 20261206_0013
Revises: 20261206_0012
Create Date: 2026-12-06 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261206_0013"
down_revision = "20261206_0012"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("claims", JSON, nullable=True),
        sa.Column("login", JSON, nullable=True),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_web_session")),
    )
    op.create_index("ix_web_session_last_seen", "web_session", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_web_session_last_seen", table_name="web_session")
    op.drop_table("web_session")

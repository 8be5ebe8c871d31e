"""security: SMART Backend Services clients and spent client-assertion ids

Revision ID: 20261126_0003
Revises: 20261126_0010
Create Date: 2026-11-26 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261126_0003"
down_revision = "20261126_0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "smart_client",
        sa.Column("client_id", sa.String(length=256), nullable=False),
        sa.Column("jwks", JSON, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("org", sa.String(length=256), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_smart_client")),
    )
    op.create_table(
        "used_jti",
        sa.Column("client_id", sa.String(length=256), nullable=False),
        sa.Column("jti", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_used_jti")),
    )
    with op.batch_alter_table("used_jti", schema=None) as batch_op:
        batch_op.create_index("ix_used_jti_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("used_jti", schema=None) as batch_op:
        batch_op.drop_index("ix_used_jti_expires_at")
    op.drop_table("used_jti")
    op.drop_table("smart_client")

"""lease token: each delivery lease carries a token of its own (app/notify/delivery.py)

A dispatcher changes a subscription's delivery state after a send only while the lease it sent under
is still its own: same owner and same token. The owner alone cannot tell two leases of one dispatcher
apart; the token can.

Revision ID: 20261206_0015
Revises: 20261206_0014
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261206_0015"
down_revision = "20261206_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription_state") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription_state") as batch:
        batch.drop_column("lease_token")

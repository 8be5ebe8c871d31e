"""unique NHS numbers: a live Patient's NHS number is held by that Patient alone

`patient_nhs_number` (the number as primary key -> the Patient's resource row) makes the database refuse
a second live Patient with the same NHS number; the repository writes it in each Patient version's
transaction (app/storage/nhs_numbers.py). It is filled here from the search index.

A database that already holds live Patients sharing an NHS number cannot take the key: the migration
first looks for them and, when there are any, raises before it changes anything (the whole upgrade is
one transaction on both databases, app/storage/migrate.py), listing Patient ids and masked numbers and
naming `safeflag patients duplicates`, which lists them too.

Revision ID: 20261206_0011
Revises: 20261206_0005
Create Date: 2026-12-06 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.storage.nhs_numbers import DuplicateNhsNumbers, duplicates, live_numbers
from app.storage.tables import patient_nhs_number

revision = "20261206_0011"
down_revision = "20261206_0005"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    found = duplicates(op.get_bind())
    if found:
        raise DuplicateNhsNumbers(found)
    op.create_table(
        "patient_nhs_number",
        sa.Column("nhs_number", sa.String(16), nullable=False),
        sa.Column("resource_pk", PK, nullable=False),
        sa.ForeignKeyConstraint(["resource_pk"], ["resource.pk"], ondelete="CASCADE",
                                name=op.f("fk_patient_nhs_number_resource_pk_resource")),
        sa.PrimaryKeyConstraint("nhs_number", name=op.f("pk_patient_nhs_number")),
    )
    op.create_index("ix_patient_nhs_number_resource", "patient_nhs_number", ["resource_pk"])
    op.execute(patient_nhs_number.insert().from_select(["nhs_number", "resource_pk"], live_numbers()))


def downgrade() -> None:
    op.drop_index("ix_patient_nhs_number_resource", table_name="patient_nhs_number")
    op.drop_table("patient_nhs_number")

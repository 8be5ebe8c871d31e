"""Tables: current resources, their versions, and typed search-index tables.

Each resource version is stored as the validated JSON the client sent plus server-set `id` and
`meta`. Index rows are derived from the same JSON by the search
parameter definitions (`app/fhir/search/definitions.py`) and written in the same transaction.
Dates are stored as naive UTC datetimes: `low` inclusive, `high` exclusive.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

JsonDoc = JSON().with_variant(JSONB(), "postgresql")
PK = BigInteger().with_variant(Integer(), "sqlite")


def _resource_fk() -> Column[int]:
    return Column("resource_pk", PK, ForeignKey("resource.pk", ondelete="CASCADE"), nullable=False)


resource = Table(
    "resource",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", JsonDoc, nullable=False),
    Column("created_by_org", String(256), nullable=True),
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    _resource_fk(),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False),
    Column("content", JsonDoc, nullable=True),
    UniqueConstraint("resource_pk", "version_id", name="uq_resource_version_pk_vid"),
    Index("ix_resource_version_type_updated", "res_type", "last_updated"),
    Index("ix_resource_version_updated", "last_updated"),
)

idx_token = Table(
    "idx_token",
    metadata,
    _resource_fk(),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(512), nullable=True),
    Column("code", String(512), nullable=True),
    Index("ix_idx_token_lookup", "res_type", "param", "code", "system"),
    Index("ix_idx_token_resource", "resource_pk"),
)

idx_string = Table(
    "idx_string",
    metadata,
    _resource_fk(),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("norm", String(512), nullable=False),
    Column("exact", Text, nullable=False),
    Index("ix_idx_string_lookup", "res_type", "param", "norm"),
    Index("ix_idx_string_resource", "resource_pk"),
)

idx_reference = Table(
    "idx_reference",
    metadata,
    _resource_fk(),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(256), nullable=True),
    Column("url", String(1024), nullable=True),
    Column("ident_system", String(512), nullable=True),
    Column("ident_value", String(512), nullable=True),
    Index("ix_idx_reference_lookup", "res_type", "param", "target_id", "target_type"),
    Index("ix_idx_reference_identifier", "res_type", "param", "ident_value"),
    Index("ix_idx_reference_target", "target_type", "target_id"),
    Index("ix_idx_reference_resource", "resource_pk"),
)

idx_date = Table(
    "idx_date",
    metadata,
    _resource_fk(),
    Column("res_type", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("low", DateTime(), nullable=False),
    Column("high", DateTime(), nullable=False),
    Index("ix_idx_date_low", "res_type", "param", "low"),
    Index("ix_idx_date_high", "res_type", "param", "high"),
    Index("ix_idx_date_resource", "resource_pk"),
)

INDEX_TABLES = (idx_token, idx_string, idx_reference, idx_date)

# One row per NHS number held by a live Patient: the primary key is what makes the number unique
# (app/storage/nhs_numbers.py writes it in the Patient version's own transaction).
patient_nhs_number = Table(
    "patient_nhs_number",
    metadata,
    Column("nhs_number", String(16), primary_key=True),
    _resource_fk(),
    Index("ix_patient_nhs_number_resource", "resource_pk"),
)

# What a search reads (the current rows and their index rows): a search flushes the rows its transaction
# queued only when they are for one of these (app/storage/buffer.py `flush`), so the audit records of a
# page's earlier reads go out with the rest at COMMIT rather than one INSERT per search
SEARCHED_TABLES = frozenset(t.name for t in (resource, *INDEX_TABLES, patient_nhs_number))

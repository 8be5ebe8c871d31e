"""Tables of the security layer: SMART Backend Services client registrations and spent assertion ids.

- `smart_client`: one row per registered client (`safeflag client add`): its public JWKS, the
  `system/` scopes it may be granted, and the organisation its tokens act for.
- `used_jti`: `jti` values of client assertions already accepted, kept until the assertion expires,
  so that a replayed assertion is refused (https://hl7.org/fhir/smart-app-launch/backend-services.html).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, String, Table, Text

from app.storage.tables import JsonDoc, metadata

smart_client = Table(
    "smart_client",
    metadata,
    Column("client_id", String(256), primary_key=True),
    Column("jwks", JsonDoc, nullable=False),
    Column("scope", Text, nullable=False),
    Column("org", String(256), nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
)

used_jti = Table(
    "used_jti",
    metadata,
    Column("client_id", String(256), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", DateTime(), nullable=False),
    Index("ix_used_jti_expires_at", "expires_at"),
)

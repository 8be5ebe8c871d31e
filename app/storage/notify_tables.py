"""Tables of the notification pipeline (match at change time, deliver from rows).

- `outbox_event`: one row per committed change, written by the Repository in the change's transaction.
- `subscription_state`: per Subscription: the gap-free event counter, the write-only HMAC secret,
  delivery lease and retry state, heartbeat bookkeeping.
- `notification`: one row per (subscription, event number): what was matched, and whether delivered.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, Text, UniqueConstraint

from app.storage.tables import PK, JsonDoc, metadata

outbox_event = Table(
    "outbox_event",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("action", String(8), nullable=False),  # create | update | delete
    Column("occurred_at", DateTime(), nullable=False),
    Column("processed_at", DateTime(), nullable=True),
    Index("ix_outbox_event_pending", "processed_at", "id"),
)

subscription_state = Table(
    "subscription_state",
    metadata,
    Column("sub_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # requested | active | error | off (mirrors the resource)
    Column("channel_type", String(16), nullable=False),
    Column("heartbeat_seconds", Integer, nullable=True),
    Column("event_count", BigInteger, nullable=False, default=0),
    Column("secret", Text, nullable=True),
    Column("owner", JsonDoc, nullable=True),  # claims of the principal that created it, for re-authorisation
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(), nullable=True),
    Column("lease_token", String(32), nullable=True),  # this lease's own token (app/notify/delivery.py)
    Column("next_attempt_at", DateTime(), nullable=True),
    Column("failing_since", DateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("last_sent_at", DateTime(), nullable=True),
    Column("handshake_due", Integer, nullable=False, default=0),
)

notification = Table(
    "notification",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("sub_id", String(64), nullable=False),
    Column("event_number", BigInteger, nullable=False),
    Column("outbox_id", BigInteger, nullable=True),
    Column("focus_type", String(64), nullable=False),
    Column("focus_id", String(64), nullable=False),
    Column("focus_version", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("occurred_at", DateTime(), nullable=False),
    Column("matched_at", DateTime(), nullable=False),
    Column("delivered_at", DateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    UniqueConstraint("sub_id", "event_number", name="uq_notification_sub_event"),
    Index("ix_notification_pending", "sub_id", "delivered_at", "event_number"),
)

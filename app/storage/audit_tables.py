"""The audit trail's own table: one append-only row per access, chained by hashes.

`audit_event` holds each AuditEvent (the IHE BALP JSON of app/security/audit.py, as stored) with the
few columns searches of the trail need (time, the user agent, the user's organisation, the resource,
the first patient, interaction, action, outcome, request id) and its place in a hash chain:

- Rows belong to a **lane** (an integer) and have a **position** 1, 2, 3... in it. Each row's `hash`
  is SHA-256 over the previous row's hash in its lane (`GENESIS` for position 1) and the row itself
  (`row_digest_input`: lane, position, event id, time, the organisation it is kept as written by, and the
  whole AuditEvent JSON with sorted keys). Changing, removing, inserting or reordering a row breaks the
  chain at that row's position (app/security/audit_verify.py finds it).
- A lane has one writer at a time (app/security/audit_trail.py): on PostgreSQL each pooled connection
  holds a lane for its lifetime (a session-level advisory lock), so concurrent transactions append to
  different lanes and never wait for each other; SQLite's one writer connection writes lane 0.

The search columns are derived from the JSON (`search_columns`), so the verifier can also tell when
one of them was changed without the JSON. The functions here are pure and versioned by `CHAIN_VERSION`:
the migration that fills the table from older databases uses them too.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from app.storage.tables import PK, JsonDoc, metadata
from app.vocabulary import CONFIDENTIALITY, OBJECT_ROLE, ROLE_CLASS

CHAIN_VERSION = "sf-audit-1"
GENESIS = "0" * 64
REQUEST_ID = "XrequestId"

audit_event = Table(
    "audit_event",
    metadata,
    Column("seq", PK, primary_key=True, autoincrement=True),
    Column("lane", Integer, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("recorded", DateTime(), nullable=False),
    Column("subtype", String(64), nullable=True),
    Column("action", String(8), nullable=True),
    Column("outcome", String(8), nullable=True),
    Column("agent", String(512), nullable=True),
    Column("org", String(512), nullable=True),
    Column("entity", String(1024), nullable=True),
    Column("patient", String(512), nullable=True),
    Column("request_id", Text, nullable=True),
    Column("occurred", DateTime(), nullable=True),
    Column("restricted", Boolean, nullable=False),
    Column("created_by_org", String(256), nullable=True),
    Column("content", JsonDoc, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("lane", "position", name="uq_audit_event_lane_position"),
    UniqueConstraint("event_id", name="uq_audit_event_event_id"),
    Index("ix_audit_event_recorded", "recorded"),
    Index("ix_audit_event_patient", "patient", "recorded"),
    Index("ix_audit_event_agent", "agent", "recorded"),
    Index("ix_audit_event_entity", "entity"),
    Index("ix_audit_event_occurred", "occurred"),
)

# Every `patient`, `entity` and `agent` reference of an event (`Type/id`, as the search parameters of
# those names read them): an event names several patients when a search showed several children, and
# the resource it touched, its patients and its agents all answer `entity`/`agent`. One narrow row each,
# keyed by the event's id; app/security/audit_search.py drives `AuditEvent?patient=` from here.
LINKED_PARAMS = ("patient", "entity", "agent", "source")  # every reference parameter of AuditEvent
# The codings `type` and `subtype` search (app/security/audit_trail.py `coded_refs`) get rows here too, two
# per coding: under the parameter's name the code alone (`subtype=read`), under the name and `|` the
# system and code as `coding_key` writes them (`subtype=http://...|read`, `subtype=|read`). Those
# searches then read an index instead of every event's JSON.
CODED_PARAMS = ("type", "subtype")
audit_event_ref = Table(
    "audit_event_ref",
    metadata,
    Column("param", String(16), nullable=False),
    Column("ref", String(512), nullable=False),
    Column("event_id", String(64), nullable=False),
    Index("ix_audit_event_ref", "param", "ref", "event_id", unique=True),
)

# Where each archived lane now starts: its last removed row's position and hash (the sanctioned removal,
# app/security/audit_archive.py). The database's triggers allow a DELETE of audit rows only up to it.
audit_event_cut = Table(
    "audit_event_cut",
    metadata,
    Column("lane", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("cut_at", DateTime(), nullable=False),
)

SEARCH_COLUMNS = ("subtype", "action", "outcome", "agent", "org", "entity", "patient", "request_id", "restricted",
                  "occurred")


def coding_key(system: str | None, code: str | None) -> str:
    """A coding as one `audit_event_ref.ref` value: JSON, so that no system or code can be mistaken for
    another however they are spelled."""
    return orjson.dumps([system, code]).decode()


def _codes(concept: Any) -> list[tuple[Any, Any]]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [(c.get("system"), c.get("code")) for c in codings or [] if isinstance(c, dict)]


def _code(coding: Any) -> tuple[Any, Any]:
    return (coding.get("system"), coding.get("code")) if isinstance(coding, dict) else (None, None)


def _instant_ms(value: Any) -> datetime | None:
    """The AuditEvent's `recorded` as naive UTC, when it has the millisecond precision the server writes
    (`2026-12-06T10:00:00.123+00:00`): the `date` search takes the row's range as [occurred, occurred +
    1 ms). Anything else is left NULL (and searched by `date` as matching nothing)."""
    if not isinstance(value, str) or len(value) < 24 or value[19:20] != "." or not value[20:23].isdigit() \
            or not (value[23:] == "Z" or value[23:24] in "+-"):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def search_columns(event: dict[str, Any]) -> dict[str, Any]:
    """The search columns of one AuditEvent, read off its JSON."""
    agents = [a for a in event.get("agent") or [] if isinstance(a, dict)]
    entities = [e for e in event.get("entity") or [] if isinstance(e, dict)]
    user = next((a for a in agents if a.get("requestor") is True), None)
    org = next((a for a in agents if (ROLE_CLASS, "PROV") in _codes(a.get("type"))), None)
    resource = next((e for e in entities if _code(e.get("role")) == (OBJECT_ROLE, "4")), None)
    patient = next((e for e in entities if _code(e.get("role")) == (OBJECT_ROLE, "1")), None)
    request = next((e for e in entities if _code(e.get("type"))[1] == REQUEST_ID), None)
    subtype = [c for c in event.get("subtype") or [] if isinstance(c, dict)]
    meta = event.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    labels = [c for c in meta.get("security") or [] if isinstance(c, dict)]
    return {
        "subtype": subtype[0].get("code") if subtype else None,
        "action": event.get("action"),
        "outcome": event.get("outcome"),
        "agent": ((user or {}).get("who") or {}).get("reference"),
        "org": ((org or {}).get("who") or {}).get("reference"),
        "entity": ((resource or {}).get("what") or {}).get("reference"),
        "patient": ((patient or {}).get("what") or {}).get("reference"),
        "request_id": (((request or {}).get("what") or {}).get("identifier") or {}).get("value"),
        "restricted": any(c.get("system") == CONFIDENTIALITY and c.get("code") in ("R", "V") for c in labels),
        "occurred": _instant_ms(event.get("recorded")),
    }


def row_digest_input(lane: int, position: int, event_id: str, recorded: datetime, created_by_org: str | None,
                     content: dict[str, Any]) -> bytes:
    """What a row's hash covers besides the previous hash: canonical JSON (sorted keys, no spaces), so that
    PostgreSQL's JSONB (which reorders keys) and SQLite's text give the same bytes."""
    return orjson.dumps(
        [CHAIN_VERSION, lane, position, event_id, recorded.isoformat(timespec="microseconds"), created_by_org,
         content],
        option=orjson.OPT_SORT_KEYS,
    )


def chain_hash(prev_hash: str, digest_input: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + digest_input).hexdigest()


def audit_row(lane: int, position: int, prev_hash: str, event_id: str, recorded: datetime,
              created_by_org: str | None, content: dict[str, Any]) -> dict[str, Any]:
    """The `audit_event` row (without `seq`) that appends `content` after `prev_hash` in `lane`."""
    digest = chain_hash(prev_hash, row_digest_input(lane, position, event_id, recorded, created_by_org, content))
    return {"lane": lane, "position": position, "event_id": event_id, "recorded": recorded,
            **search_columns(content), "created_by_org": created_by_org, "content": content,
            "prev_hash": prev_hash, "hash": digest}

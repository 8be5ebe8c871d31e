"""The web app's server-side sessions (app/web/session.py).

`web_session`: one row per browser session, found by the SHA-256 of the random value its HttpOnly cookie
holds (the database never holds a value that would sign anyone in). A row starts as a sign-in under way
(`login`: the OpenID Connect state, PKCE verifier and nonce; `claims` empty) and becomes a signed-in
session (`claims`: what rebuilds the user's Principal) under a new id. `csrf` is the session's form token;
`last_seen` (the injected clock) decides the idle timeout; sign-out deletes the row, so the old cookie
no longer works anywhere.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, String, Table

from app.storage.tables import JsonDoc, metadata

web_session = Table(
    "web_session",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("claims", JsonDoc, nullable=True),
    Column("login", JsonDoc, nullable=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("last_seen", DateTime(), nullable=False),
    Index("ix_web_session_last_seen", "last_seen"),
)

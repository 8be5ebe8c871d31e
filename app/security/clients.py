"""SMART Backend Services client registrations and spent assertion ids, read and written in the
caller's transaction (https://hl7.org/fhir/smart-app-launch/backend-services.html#registering-a-smart-backend-service).

A client registers a public JWKS (inline: `safeflag client add --jwks-file`), the `system/` scopes it
may be granted, and the organisation its tokens act for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.security.scopes import parse_scope
from app.security.tokens import key_fits
from app.storage.buffer import savepoint
from app.storage.security_tables import smart_client, used_jti

ASSERTION_ALGS = ("RS384", "ES384")  # what the SMART spec requires servers to support


@dataclass(frozen=True)
class ClientRegistration:
    client_id: str
    jwks: dict[str, Any]
    scope: str
    org: str | None = None
    active: bool = True


def validate_jwks(doc: Any) -> dict[str, Any]:
    """A JWKS (or a single JWK) of public signing keys usable with RS384/ES384, each with a kid."""
    keys = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
    if not isinstance(keys, list) or not keys:
        raise ValueError("the JWKS must be an object with a non-empty 'keys' list")
    out = []
    for i, jwk in enumerate(keys):
        if not isinstance(jwk, dict):
            raise ValueError(f"keys[{i}] is not a JSON object")  # noqa: TRY004  (bad input, reported as such)
        if any(p in jwk for p in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise ValueError(f"keys[{i}] holds private key material; register the public key only")
        if not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            raise ValueError(f"keys[{i}] has no 'kid' (client assertions must name their key)")
        if not any(key_fits(alg, jwk) for alg in ASSERTION_ALGS):
            raise ValueError(f"keys[{i}] is neither an RSA nor an EC P-384 key (RS384/ES384 are accepted)")
        out.append({k: v for k, v in jwk.items() if k in ("kty", "kid", "alg", "use", "crv", "x", "y", "n", "e")})
    return {"keys": out}


def validate_client_scope(text: str) -> str:
    parts = text.split()
    if not parts:
        raise ValueError("a client needs at least one system/ scope")
    for part in parts:
        scope = parse_scope(part)
        if scope is None or scope.context != "system":
            raise ValueError(f"'{part}' is not a SMART v2 system/ resource scope (e.g. system/Encounter.c)")
    return " ".join(parts)


async def get_client(session: AsyncSession, client_id: str) -> ClientRegistration | None:
    c = smart_client.c
    row = (await session.execute(select(c.client_id, c.jwks, c.scope, c.org, c.active)
                                 .where(c.client_id == client_id))).first()
    return ClientRegistration(*row) if row else None


async def list_clients(session: AsyncSession) -> list[ClientRegistration]:
    c = smart_client.c
    rows = await session.execute(select(c.client_id, c.jwks, c.scope, c.org, c.active).order_by(c.client_id))
    return [ClientRegistration(*row) for row in rows]


async def remove_client(session: AsyncSession, client_id: str) -> bool:
    """Delete a registration; False when there was none. Its spent assertion ids stay until they expire
    (so registering it again cannot replay them), and access tokens already issued stay valid until they
    expire (five minutes at most)."""
    result = await session.execute(delete(smart_client).where(smart_client.c.client_id == client_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def put_client(session: AsyncSession, reg: ClientRegistration, now: datetime) -> bool:
    """Register or replace a client; True when it is new."""
    values = {"jwks": reg.jwks, "scope": reg.scope, "org": reg.org, "active": reg.active, "updated_at": now}
    result = await session.execute(update(smart_client).where(smart_client.c.client_id == reg.client_id)
                                   .values(**values))
    if result.rowcount:  # type: ignore[attr-defined]
        return False
    await session.execute(insert(smart_client).values(client_id=reg.client_id, created_at=now, **values))
    return True


async def spend_jti(session: AsyncSession, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
    """Record an assertion id until it expires; False when it was seen before (a replay)."""
    await session.execute(delete(used_jti).where(used_jti.c.expires_at < now))
    try:
        async with savepoint(session):
            await session.execute(insert(used_jti).values(client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False
    return True

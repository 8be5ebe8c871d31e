"""`safeflag client add | list | remove | keygen | assertion`: SMART Backend Services clients.

`add`, `list` and `remove` manage the registrations (a client's public JWKS, the `system/` scopes it
may be granted, its organisation). `keygen` and `assertion` are the client's side, for trying the flow
with curl or scripting an integration: a key pair with its JWKS, and a signed client assertion
(app/security/client_keys.py). Output meant for scripts (a JWT, the client list) goes to stdout alone.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli_errors import describe, fail, safeflag_script
from app.clock import clock_for
from app.config import Settings, get_settings
from app.security import client_keys
from app.security.cli import base_url_option, reference_option
from app.security.clients import (
    ClientRegistration,
    list_clients,
    put_client,
    remove_client,
    validate_client_scope,
    validate_jwks,
)
from app.security.runtime import token_endpoint
from app.storage.repository import utc_ms

T = TypeVar("T")
_FILE_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_SCOPE = "system/Encounter.cru system/Patient.rs"


async def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *,
                          migrate: bool = False) -> T:
    from app.storage.db import create_engine, create_sessionmaker
    from app.storage.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    try:
        if migrate:
            await upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def _database(work: Callable[[AsyncSession], Awaitable[T]], *, migrate: bool = False) -> T:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(_in_transaction(get_settings(), work, migrate=migrate))
    except (OSError, SQLAlchemyError) as exc:
        raise fail(f"cannot use the database: {describe(exc)}", 1) from None


def _client_id(value: str) -> str:
    if not value or len(value) > 256:
        raise fail("--id must be 1 to 256 characters")
    return value


def client_add(
    client_id: Annotated[str, typer.Option("--id", help="client_id the client will use as iss/sub")],
    jwks_file: Annotated[Path, typer.Option("--jwks-file", help="the client's public JWKS (JSON)")],
    scope: Annotated[str, typer.Option("--scope", help='system/ scopes it may get, e.g. "system/Encounter.c"')],
    org: Annotated[str | None, typer.Option("--org", help="Organization/<id> its tokens act for")] = None,
) -> None:
    """Register (or replace) a SMART Backend Services client."""
    _client_id(client_id)
    reference_option(org, "--org", ("Organization",))
    try:
        jwks = validate_jwks(json.loads(jwks_file.read_text(encoding="utf-8")))
        scopes = validate_client_scope(scope)
    except OSError as exc:
        raise fail(f"cannot read {jwks_file}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{jwks_file} is not JSON: {exc}") from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    reg = ClientRegistration(client_id, jwks, scopes, org)
    now = utc_ms(clock_for(get_settings()).now())
    created = _database(lambda session: put_client(session, reg, now), migrate=True)
    typer.echo(f"{'registered' if created else 'updated'} client {client_id} "
               f"({len(jwks['keys'])} key(s); scopes: {scopes})", err=True)


def client_list(
    as_json: Annotated[bool, typer.Option("--json", help="a JSON array instead of one line per client")] = False,
) -> None:
    """List the registered clients: id, organisation, scopes, key ids (tab-separated, by id)."""
    clients = _database(list_clients)
    if as_json:
        typer.echo(json.dumps([{"id": c.client_id, "org": c.org, "scope": c.scope, "active": c.active,
                                "kids": [k.get("kid") for k in c.jwks.get("keys", [])]} for c in clients]))
        return
    for c in clients:
        kids = ",".join(str(k.get("kid")) for k in c.jwks.get("keys", []))
        typer.echo("\t".join((c.client_id, c.org or "-", c.scope, kids, "" if c.active else "inactive")).rstrip())


def client_remove(client_id: Annotated[str, typer.Option("--id", help="the client to remove")]) -> None:
    """Remove a client: it can get no new access token (those it holds expire within five minutes)."""
    _client_id(client_id)
    if not _database(lambda session: remove_client(session, client_id)):
        raise fail(f"no client '{client_id}' is registered")
    typer.echo(f"removed client {client_id}", err=True)


def client_keygen(
    client_id: Annotated[str, typer.Option("--id", help="the client id (names the files)")],
    alg: Annotated[str, typer.Option("--alg", help="ES384 (EC P-384) or RS384 (RSA 3072)")] = "ES384",
    out_dir: Annotated[Path, typer.Option("--out-dir", help="where to write <id>.key.pem and <id>.jwks.json")] = Path(),
    scope: Annotated[str, typer.Option("--scope", help="system/ scopes for the printed client add")] = DEFAULT_SCOPE,
    org: Annotated[str | None, typer.Option("--org", help="Organization/<id> for the printed client add")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="the server's public base URL")] = None,
) -> None:
    """Make a client key pair: the private key (PEM, mode 0600) and its public JWKS; print what to run next."""
    if not _FILE_SAFE.match(client_id):
        raise fail("--id must be 1 to 64 letters, digits, '.', '_' or '-' (it names the files)")
    if alg not in client_keys.KEY_ALGS:
        raise fail(f"--alg must be one of {', '.join(client_keys.KEY_ALGS)}, not '{alg}'")
    reference_option(org, "--org", ("Organization",))
    try:
        validate_client_scope(scope)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not out_dir.is_dir():
        raise fail(f"--out-dir: {out_dir} is not a directory")
    key_file, jwks_file = out_dir / f"{client_id}.key.pem", out_dir / f"{client_id}.jwks.json"
    for existing in (key_file, jwks_file):
        if existing.exists() or existing.is_symlink():
            raise fail(f"{existing} already exists; remove it or choose another --out-dir")
    key = client_keys.generate(alg)
    jwks = client_keys.client_jwks(key)
    try:
        client_keys.write_private_key(key, key_file)
        jwks_file.write_text(json.dumps(jwks, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        key_file.unlink(missing_ok=True)
        raise fail(f"cannot write to {out_dir}: {exc.strerror}", 1) from None
    settings = get_settings() if base_url is None else get_settings(base_url=base_url_option(base_url))
    script, q = safeflag_script(), shlex.quote
    add = f"{script} client add --id {q(client_id)} --jwks-file {q(str(jwks_file))} --scope {q(scope)}"
    typer.echo(f"private key : {key_file} ({alg}, mode 0600: keep it secret)")
    typer.echo(f"public JWKS : {jwks_file} (kid {jwks['keys'][0]['kid']})")
    typer.echo(f"register    : {add}{f' --org {q(org)}' if org else ''}")
    typer.echo(f"sign        : ASSERTION=$({script} client assertion --key {q(str(key_file))} "
               f"--client-id {q(client_id)} --token-url {q(token_endpoint(settings))})")


def client_assertion(
    key_file: Annotated[Path, typer.Option("--key", help="the client's private key (PEM)")],
    client_id: Annotated[str, typer.Option("--client-id", help="the registered client id (iss and sub)")],
    token_url: Annotated[str | None, typer.Option(
        "--token-url", help="the token endpoint, the assertion's aud (default: <base URL>/auth/token)")] = None,
    kid: Annotated[str | None, typer.Option("--kid", help="key id (default: the key's RFC 7638 thumbprint)")] = None,
) -> None:
    """Print a signed client assertion (JWT: five minutes, a fresh jti) for POST /auth/token."""
    _client_id(client_id)
    url = base_url_option(token_url, "--token-url") if token_url else token_endpoint(get_settings())
    try:
        key = client_keys.load_private_key(key_file)
    except OSError as exc:
        raise fail(f"cannot read {key_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(client_keys.sign_assertion(key, client_id, url, kid=kid))


def register_clients(app: typer.Typer) -> None:
    clients = typer.Typer(help="SMART Backend Services clients", no_args_is_help=True, add_completion=False)
    for name, command in (("add", client_add), ("list", client_list), ("remove", client_remove),
                          ("keygen", client_keygen), ("assertion", client_assertion)):
        clients.command(name)(command)
    app.add_typer(clients, name="client")

"""`safeflag token` and `safeflag client add` (contract section 1), registered on the `safeflag` app
by `register(app)` in app/cli.py.

`token` prints one compact JWT from the local issuer key (and nothing else on stdout, so that
`TOKEN=$(safeflag token --sub demo --role admin)` works). `client add` registers a SMART Backend
Services client: its public JWKS, the `system/` scopes it may be granted, and its organisation.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.cli_errors import fail
from app.config import Settings, get_settings
from app.security.clients import ClientRegistration, put_client, validate_client_scope, validate_jwks
from app.security.keys import InsecureKeyError, load_or_create_issuer_key
from app.security.principal import ROLES
from app.security.runtime import local_issuer
from app.security.scopes import parse_scope
from app.security.tokens import MAX_LIFETIME, TokenIssuer, default_scope

console = Console(stderr=True)


def _ref(value: str | None, option: str, types: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    rtype, _, rid = value.partition("/")
    if rtype not in types or not rid:
        raise fail(f"{option} must look like {types[0]}/<id>, not '{value}'")
    return value


def mint_token(
    settings: Settings, *, sub: str, role: str, org: str | None = None, practitioner: str | None = None,
    care_setting: str | None = None, scope: str | None = None, ttl: int = 3600,
) -> str:
    """The token `safeflag token` prints (also used by tests and the demo)."""
    key = load_or_create_issuer_key(settings.data_dir)
    issuer = TokenIssuer(local_issuer(settings), settings.fhir_base, key)
    return issuer.mint(sub=sub, role=role, scope=scope or default_scope(role), ttl=ttl, org=org,
                       fhir_user=practitioner, care_setting=care_setting)


def token(
    sub: Annotated[str, typer.Option("--sub", help="subject: the user or client id")],
    role: Annotated[str, typer.Option("--role", help="one of: " + ", ".join(ROLES))],
    org: Annotated[str | None, typer.Option("--org", help="Organization/<id> the user acts for")] = None,
    practitioner: Annotated[
        str | None, typer.Option("--practitioner", help="fhirUser: Practitioner/<id> or PractitionerRole/<id>")
    ] = None,
    care_setting: Annotated[str | None, typer.Option("--care-setting", help="care setting code")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help='SMART v2 scopes, e.g. "user/Flag.rs"')] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, max=MAX_LIFETIME, help="lifetime in seconds (at most 24 h)")] = 3600,
) -> None:
    """Print one signed bearer token (compact JWT) from the local issuer key."""
    if role not in ROLES:
        raise fail(f"--role must be one of {', '.join(ROLES)}")
    _ref(org, "--org", ("Organization",))
    _ref(practitioner, "--practitioner", ("Practitioner", "PractitionerRole"))
    if scope is not None:
        context = "system" if role == "system" else "user"
        useful = [p for p in scope.split() if (s := parse_scope(p)) is not None and s.context == context]
        if not useful:
            raise fail(f"--scope grants nothing to role {role}: it needs {context}/ resource scopes")
    try:
        text = mint_token(get_settings(), sub=sub, role=role, org=org, practitioner=practitioner,
                          care_setting=care_setting, scope=scope, ttl=ttl)
    except InsecureKeyError as exc:
        raise fail(str(exc)) from None
    typer.echo(text)


async def _register(settings: Settings, reg: ClientRegistration) -> bool:
    from app.storage.db import create_engine, create_sessionmaker
    from app.storage.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    try:
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            return await put_client(session, reg, datetime.now(UTC).replace(tzinfo=None))
    finally:
        await engine.dispose()


def client_add(
    client_id: Annotated[str, typer.Option("--id", help="client_id the client will use as iss/sub")],
    jwks_file: Annotated[Path, typer.Option("--jwks-file", help="the client's public JWKS (JSON)")],
    scope: Annotated[str, typer.Option("--scope", help='system/ scopes it may get, e.g. "system/Encounter.c"')],
    org: Annotated[str | None, typer.Option("--org", help="Organization/<id> its tokens act for")] = None,
) -> None:
    """Register (or replace) a SMART Backend Services client."""
    if not client_id or len(client_id) > 256:
        raise fail("--id must be 1 to 256 characters")
    _ref(org, "--org", ("Organization",))
    try:
        jwks = validate_jwks(json.loads(jwks_file.read_text(encoding="utf-8")))
        scopes = validate_client_scope(scope)
    except OSError as exc:
        raise fail(f"cannot read {jwks_file}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{jwks_file} is not JSON: {exc}") from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    created = asyncio.run(_register(get_settings(), ClientRegistration(client_id, jwks, scopes, org)))
    console.print(f"[green]{'registered' if created else 'updated'}[/green] client {client_id} "
                  f"({len(jwks['keys'])} key(s); scopes: {scopes})")


def register(app: typer.Typer) -> None:
    app.command("token")(token)
    clients = typer.Typer(help="SMART Backend Services clients", no_args_is_help=True, add_completion=False)
    clients.command("add")(client_add)
    app.add_typer(clients, name="client")

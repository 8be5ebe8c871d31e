"""`safeflag token` (and the `client` commands of app/security/client_cli.py), registered on the
`safeflag` app by `register(app)` in app/cli.py.

`token` prints one compact JWT from the local issuer key (and nothing else on stdout, so that
`TOKEN=$(safeflag token --sub demo --role admin)` works), for the server at the configured base URL
(`SAFEFLAG_BASE_URL`) or `--base-url`: the issuer and audience a server accepts follow its base URL.
Every option is checked: an unknown role, care setting or scope is refused, never dropped.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer

from app.cli_errors import fail
from app.config import Settings, get_settings
from app.security.keys import InsecureKeyError, load_or_create_issuer_key
from app.security.principal import ROLES
from app.security.runtime import local_issuer
from app.security.scopes import parse_scope
from app.security.tokens import MAX_LIFETIME, TokenIssuer, default_scope
from app.vocabulary import CANONICAL_BASE


def base_url_option(value: str, option: str = "--base-url") -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise fail(f"{option} must be an http(s) URL such as http://127.0.0.1:8080, not '{value}'")
    return value.rstrip("/")


def reference_option(value: str | None, option: str, types: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    rtype, _, rid = value.partition("/")
    if rtype not in types or not rid:
        raise fail(f"{option} must look like {types[0]}/<id>, not '{value}'")
    return value


CARE_SETTINGS = CANONICAL_BASE + "/ValueSet/care-setting"
# token --scope may also carry these (they grant nothing here, but an identity provider's tokens have them)
IDENTITY_SCOPES = ("openid", "fhirUser", "profile", "launch", "online_access", "offline_access")


def care_setting_codes() -> list[tuple[str, str]]:
    """(system, code) of every care setting a token may name, from the bundled ValueSet."""
    from app.fhir.profiles import get_store

    return sorted(get_store().terminology.expand(CARE_SETTINGS))  # SNOMED CT (http:) before the local codes


def _care_setting(value: str | None) -> str | None:
    if value is None:
        return None
    system, bar, code = value.rpartition("|")
    if any(c == code and (not bar or s == system) for s, c in care_setting_codes()):
        return value
    raise fail(f"--care-setting '{value}' is not one of {', '.join(c for _, c in care_setting_codes())}")


def _check_scope(scope: str, role: str) -> None:
    """Every part a resource scope of the role's context (user/ or system/) or an identity scope: an
    unknown or misspelt scope is refused, never silently dropped."""
    context = "system" if role == "system" else "user"
    parts = scope.split()
    for part in parts:
        parsed = parse_scope(part)
        if part not in IDENTITY_SCOPES and (parsed is None or parsed.context != context):
            raise fail(f"--scope: '{part}' is not a SMART v2 {context}/ resource scope the server knows "
                       f"(e.g. {context}/Flag.rs)")
    if all(part in IDENTITY_SCOPES for part in parts):
        raise fail(f"--scope grants nothing to role {role}: it needs {context}/ resource scopes")


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
    care_setting: Annotated[str | None, typer.Option(
        "--care-setting", help="where the user works: " + ", ".join(c for _, c in care_setting_codes()))] = None,
    scope: Annotated[str | None, typer.Option("--scope", help='SMART v2 scopes, e.g. "user/Flag.rs"')] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, max=MAX_LIFETIME, help="lifetime in seconds (at most 24 h)")] = 3600,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="the server's public base URL (default: SAFEFLAG_BASE_URL, else http://127.0.0.1:8080)")] = None,
) -> None:
    """Print one signed bearer token (compact JWT) from the local issuer key."""
    if role not in ROLES:
        raise fail(f"--role must be one of {', '.join(ROLES)}")
    reference_option(org, "--org", ("Organization",))
    reference_option(practitioner, "--practitioner", ("Practitioner", "PractitionerRole"))
    _care_setting(care_setting)
    if scope is not None:
        _check_scope(scope, role)
    settings = get_settings() if base_url is None else get_settings(base_url=base_url_option(base_url))
    try:
        text = mint_token(settings, sub=sub, role=role, org=org, practitioner=practitioner,
                          care_setting=care_setting, scope=scope, ttl=ttl)
    except InsecureKeyError as exc:
        raise fail(str(exc)) from None
    typer.echo(text)


def register(app: typer.Typer) -> None:
    from app.security.client_cli import register_clients

    app.command("token")(token)
    register_clients(app)

"""The `safeflag` command: `serve`, `migrate`, `dispatcher` and the operational subcommands (docs/deployment.md)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from app.cli_errors import describe, fail, run, safeflag_script
from app.config import Settings, get_settings
from app.ports import UnitOfWork

app = typer.Typer(help="SafeFlag: FHIR R4 safeguarding service", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"safeflag {version('safeflag')}")
        except PackageNotFoundError:  # a source tree that was never installed
            typer.echo("safeflag (not installed)")
        raise typer.Exit(0)


@app.callback()
def _main(
    _version_flag: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                                help="print the version and exit")] = False,
) -> None:
    """SafeFlag: FHIR R4 safeguarding service"""


async def _migrate() -> None:
    from app.storage.db import create_engine
    from app.storage.migrate import upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def _migrate_or_exit() -> None:
    """Migrate, or say in one line why not (no traceback) and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.storage.nhs_numbers import DuplicateNhsNumbers

    try:
        asyncio.run(_migrate())
    except DuplicateNhsNumbers as exc:  # the list of records to resolve, NHS numbers masked
        console.print(f"cannot migrate the database: {exc}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(1) from None
    except (OSError, SQLAlchemyError) as exc:
        raise fail(f"cannot migrate the database: {describe(exc)}", 1) from None


@app.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head) to the configured database."""
    from app.storage.migrate import head_revision

    _migrate_or_exit()
    console.print(f"[green]database is at the latest migration ({head_revision()})[/green]")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8080,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="do not migrate first")] = False,
    no_dispatcher: Annotated[bool, typer.Option("--no-dispatcher", help="no in-process dispatcher")] = False,
) -> None:
    """Serve the FHIR API (migrates first unless --no-migrate). SIGTERM stops it gracefully, exit code 0."""
    import signal

    import uvicorn

    from app.observability import uvicorn_log_config

    if "base_url" not in get_settings().model_fields_set:
        # Without SAFEFLAG_BASE_URL, paging links and Location headers point where this process listens
        # (workers read the environment, so it is passed on that way).
        public = "127.0.0.1" if host in ("0.0.0.0", "::", "") else (f"[{host}]" if ":" in host else host)
        os.environ["SAFEFLAG_BASE_URL"] = f"http://{public}:{port}"
    settings = get_settings()
    from app.clock import refusal as clock_refusal
    from app.web.dev_sign_in import check_config

    refusal = check_config(settings, host) or clock_refusal(settings, host)
    if refusal:
        raise fail(refusal)
    _port_free_or_exit(host, port)
    if settings.metrics_bind:
        from app.metrics_listener import parse_bind

        try:
            _port_free_or_exit(*parse_bind(settings.metrics_bind))
        except ValueError as exc:
            raise fail(str(exc)) from None
    _issuer_key_or_exit(settings)
    if not no_migrate:
        _migrate_or_exit()
    if no_dispatcher:
        os.environ["SAFEFLAG_NO_DISPATCHER"] = "1"
    _print_banner(settings, host, port, workers)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the handler it
    # found; a no-op handler here turns a requested stop into a normal exit (0) instead of 143/130.
    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopped.append(signum))
    from app.prefork import preload, use_fork

    preload()
    if workers > 1:
        use_fork()  # each worker is a fork of this process, the app already imported (app/prefork.py)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # httptools + uvloop: the pure-Python h11 protocol costs far more CPU per keep-alive request
        loop="uvloop",
        http="httptools",
        log_config=uvicorn_log_config(),
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _port_free_or_exit(host: str, port: int) -> None:
    """Say that the address is taken before printing a banner for a server that cannot start (uvicorn
    would log it only after the banner, migrations and all). Bound and closed at once, with the
    SO_REUSEADDR uvicorn sets, so only a socket that is really listening there refuses it."""
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise fail(f"cannot listen on {host}:{port}: {reason}", 1) from None


def _issuer_key_or_exit(settings: Settings) -> None:
    """Create the local issuer key on first start; refuse to start with a default, weak or exposed one."""
    from app.security.keys import InsecureKeyError, load_or_create_issuer_key

    try:
        load_or_create_issuer_key(settings.data_dir)
    except InsecureKeyError as exc:
        raise fail(f"refusing to start: {exc}") from None


def _print_banner(settings: Settings, host: str, port: int, workers: int) -> None:
    """Where to point a FHIR client and how to get a token; stdout, so stderr stays pure JSON logs."""
    from sqlalchemy.engine.url import make_url

    script = safeflag_script()
    database = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    print(f"SafeFlag FHIR R4 server on http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''})")
    print(f"  FHIR base URL : {settings.fhir_base}")
    print(f"  web app       : {settings.base_url.rstrip('/')}/app{_sign_in_hint(settings)}")
    print(f"  database      : {database}")
    print(f"  mint a token  : TOKEN=$({_token_hint(settings, script)})")
    print(f'  then          : curl -H "Authorization: Bearer $TOKEN" {settings.fhir_base}/Patient')
    scrape = f"   metrics without a token: http://{settings.metrics_bind}/metrics" if settings.metrics_bind else ""
    print(f"  operations    : /healthz /readyz /metrics{scrape}   (stop: Ctrl-C or SIGTERM)", flush=True)


def _sign_in_hint(settings: Settings) -> str:
    if settings.web_dev_sign_in:
        return "   (development sign-in: the demo borough's people)"
    if settings.web_oidc_issuer:
        return f"   (sign in with {settings.web_oidc_issuer})"
    return "   (no sign-in configured: see docs/web-app.md)"


def _token_hint(settings: Settings, script: str) -> str:
    """`safeflag token` as it must be typed in another shell to mint for this server: the base URL (the
    issuer and audience) always, the data directory (the issuer key) when it is not the default."""
    import shlex

    env = ""
    if "data_dir" in settings.model_fields_set:
        env = f"SAFEFLAG_DATA_DIR={shlex.quote(str(settings.data_dir.resolve()))} "
    return f"{env}{script} token --base-url {shlex.quote(settings.base_url)} --sub demo --role admin"


@app.command()
def dispatcher(
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="do not migrate first")] = False,
) -> None:
    """Run notification delivery workers only (any number of these against one PostgreSQL)."""
    from app.clock import refusal
    from app.worker import run_standalone

    if (refused := refusal(get_settings())) is not None:
        raise fail(refused)
    if not no_migrate:
        _migrate_or_exit()
    asyncio.run(run_standalone(get_settings()))


from app.security.cli import register as _register_security  # noqa: E402  (token, client add)

_register_security(app)

from app.security.audit_cli import register as _register_audit  # noqa: E402  (audit verify, audit checkpoint)

_register_audit(app)

from app.safeguarding.report_cli import register as _register_report  # noqa: E402  (report)

_register_report(app)

from app.safeguarding.caseload_cli import register as _register_caseload  # noqa: E402  (import-caseload)


def _open_context(settings: Settings) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
    """The app's context for a command that writes through the engine (imported only when one runs)."""
    from app.context import opened

    return opened(settings)


_register_caseload(app, _open_context)

from app.safeguarding.patients_cli import register as _register_patients  # noqa: E402  (patients duplicates)

_register_patients(app)

from app.demo_cli import register as _register_demo  # noqa: E402  (demo)

_register_demo(app)


def main() -> None:
    """The `safeflag` console script: errors are one plain line on stderr (app/cli_errors.py)."""
    sys.exit(run(app))


if __name__ == "__main__":
    main()

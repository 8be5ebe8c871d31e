"""The `safeflag` command (contract section 1)."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from rich.console import Console

from app.config import get_settings

app = typer.Typer(help="SafeFlag: FHIR R4 safeguarding service", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


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


@app.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head)."""
    asyncio.run(_migrate())
    console.print("[green]database is at the latest migration[/green]")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8080,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="do not migrate first")] = False,
    no_dispatcher: Annotated[bool, typer.Option("--no-dispatcher", help="no in-process dispatcher")] = False,
) -> None:
    """Serve the FHIR API."""
    import uvicorn

    settings = get_settings()
    if not no_migrate:
        asyncio.run(_migrate())
    if no_dispatcher:
        os.environ["SAFEFLAG_NO_DISPATCHER"] = "1"
    console.print(f"SafeFlag FHIR base: [bold]{settings.fhir_base}[/bold]  (listening on {host}:{port})")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    app()

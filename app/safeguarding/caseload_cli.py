"""`safeflag import-caseload FILE.csv [--batch-size N]`: the command around
`caseload.py`, with a rich progress bar. Registered on the `safeflag` app by `register(app, open_context)`
in app/cli.py, which gives it the app's context to import with. Exit codes: 0 every row imported (or already there); 1 some rows were bad (listed with
their line numbers; the good ones are committed); 2 the file or database could not be used at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli_errors import describe, fail
from app.config import Settings, get_settings
from app.ports import UnitOfWork
from app.safeguarding.caseload import CaseloadFileError, Report, Row, import_rows, read_rows

err = Console(stderr=True)

# The app's context for the settings, closed when the block ends (app/cli.py passes it to `register`).
OpenContext = Callable[[Settings], AbstractAsyncContextManager[UnitOfWork]]


async def _import(open_context: OpenContext, rows: list[Row], report: Report, batch_size: int) -> None:
    columns = (TextColumn("importing caseload"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    async with open_context(get_settings()) as ctx:
        with Progress(*columns, console=err) as bar:
            task = bar.add_task("rows", total=len(rows))
            await import_rows(ctx, rows, report, batch_size=batch_size, progress=lambda n: bar.advance(task, n))


def import_caseload(open_context: OpenContext, file: Path, batch_size: int) -> None:
    """Load health-visitor / school-nurse / safeguarding-lead caseloads: one CareTeam per child."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with open(file, encoding="utf-8-sig", newline="") as stream:
            rows, bad = read_rows(stream)
    except (OSError, UnicodeDecodeError, CaseloadFileError) as exc:
        raise fail(f"cannot read {file}: {exc}") from None
    report = Report(rows=len(rows) + len(bad), bad=bad)
    try:
        asyncio.run(_import(open_context, rows, report, batch_size))
    except (OSError, SQLAlchemyError) as exc:
        raise fail(f"database: {describe(exc)}") from None
    err.print(
        f"{report.rows} rows: {report.imported} imported, {report.unchanged} already there, "
        f"{len(report.bad)} bad; CareTeams {report.care_teams_created} created, "
        f"{report.care_teams_updated} updated; Patients {report.patients_created} created", soft_wrap=True,
    )
    for bad_row in sorted(report.bad, key=lambda b: b.line):
        err.print(f"  line {bad_row.line}: {bad_row.reason}", soft_wrap=True, markup=False)
    if report.bad:
        raise typer.Exit(1)


def register(app: typer.Typer, open_context: OpenContext) -> None:
    @app.command("import-caseload")
    def command(
        file: Annotated[Path, typer.Argument(help="CSV: nhs_number,practitioner,role,team,start_date")],
        batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=10_000, help="rows per transaction")] = 500,
    ) -> None:
        """Load health-visitor / school-nurse / safeguarding-lead caseloads: one CareTeam per child."""
        import_caseload(open_context, file, batch_size)

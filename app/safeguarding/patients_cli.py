"""`safeflag patients duplicates [--full-numbers]`: the live Patients that share an NHS number.

A live Patient's NHS number is unique, and the migration that makes the database enforce it refuses
to run while duplicates exist (app/storage/nhs_numbers.py). This lists them, on a migrated database or
on one still at an older schema, as a plain table (NHS number, Patient), the numbers masked to their
last four digits unless `--full-numbers` (for the operator's terminal; never paste that into a log).
Registered on the `safeflag` app by `register(app)` in app/cli.py. Exit codes: 0 no duplicates;
1 duplicates listed; 2 the database could not be read (one plain line on stderr).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from app.config import get_settings
from app.storage.nhs_numbers import duplicates as find_duplicates
from app.storage.nhs_numbers import listing

patients = typer.Typer(help="Patient records: data-quality checks", no_args_is_help=True)


async def _find() -> dict[str, list[str]]:
    from app.storage.db import create_engine

    engine = create_engine(get_settings().effective_database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(find_duplicates)
    finally:
        await engine.dispose()


@patients.command("duplicates")
def duplicates(
    full_numbers: Annotated[bool, typer.Option("--full-numbers", help="show NHS numbers in full (terminal only)")]
    = False,
) -> None:
    """List live Patients that share an NHS number (exit 1 when there are any)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        groups = asyncio.run(_find())
    except (OSError, SQLAlchemyError) as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        print(f"error: cannot read the database: {type(exc).__name__}: {first_line}", file=sys.stderr)
        raise typer.Exit(2) from None
    if not groups:
        print("No two live Patients share an NHS number.")
        return
    for line in listing(groups, full_numbers=full_numbers):
        print(line)
    count = sum(len(ids) for ids in groups.values())
    print(f"{count} live Patients share {len(groups)} NHS number(s). Keep one record per child: move the "
          "references to it, delete the others (role admin), then run `safeflag migrate`.")
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(patients, name="patients")

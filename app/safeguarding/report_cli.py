"""`safeflag report --month YYYY-MM [--org REF] [--format table|json|csv] [--chart FILE.png] [--as-of INSTANT]`:
the governance figures of `report.py` read straight from the configured
database, as a rich table (one column per organisation), a JSON list of objects with the report's
figure names, or CSV; `--chart` also draws the twelve months up to `--month` (all organisations, or `--org`)
as a PNG with matplotlib. Registered on the `safeflag` app by `register(app)` in app/cli.py.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.cli_errors import describe, fail
from app.config import get_settings
from app.errors import FhirError
from app.safeguarding.report import Number, Report, Tally, governance_report, month_range, to_rows

err = Console(stderr=True)
FORMATS = ("table", "json", "csv")
TREND_MONTHS = 12
COUNTS = ("referral-copies", "ed-notifications", "ed-overdue", "ed-unrouted", "access-notifications")
SHARES = ("referral-qa-share", "ed-acknowledged-on-time-share")
SECONDS = ("ed-delivery-median-seconds", "ed-delivery-p95-seconds")


def months_up_to(month: str, n: int) -> list[str]:
    year, mon = int(month[:4]), int(month[5:7])
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{mon:02d}")
        year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
    return out[::-1]


async def _reports(months: list[str], org: str | None, as_of: datetime) -> list[Report]:
    from app.storage.db import create_engine, create_sessionmaker

    settings = get_settings()
    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return [await governance_report(session, settings.fhir_base, m, org, as_of) for m in months]
    finally:
        await engine.dispose()


PER_CODE = ("referral-qa-outcome-", "flags-")  # counts per code: absent means none


def _cell(name: str, value: Number) -> str:
    if value is None:
        return "0" if name.startswith(PER_CODE) else "-"
    if name.endswith("-share") and isinstance(value, float):
        return f"{value * 100:.1f} %"
    return str(value)


def _names(rows: list[dict[str, Any]]) -> list[str]:
    """The fixed figure names in their published order, then every per-code count any organisation has, sorted."""
    names: list[str] = list(Tally().figures())
    extra = {k for row in rows for k in row if k != "organization" and k not in names}
    return names + sorted(extra, key=lambda k: (not k.startswith(PER_CODE[0]), k))


def print_table(report: Report) -> None:
    rows = to_rows(report)
    out = Console(file=sys.stdout, width=max(100, 48 + 26 * len(rows)))
    table = Table(title=f"SafeFlag governance figures, {report.month} (as of {report.as_of:%Y-%m-%d %H:%M} UTC)")
    table.add_column("figure", style="bold", no_wrap=True)
    for row in rows:
        org = str(row["organization"])
        table.add_column(f"{report.names.get(org, org)}\n{org}" if org in report.names else org, justify="right")
    for name in _names(rows):
        table.add_row(name, *[_cell(name, row.get(name)) for row in rows])  # type: ignore[arg-type]
    if not rows:
        out.print(f"No records for {report.month}.")
        return
    out.print(table)
    if report.total.unrouted:
        out.print(f"ed-unrouted: {report.total.unrouted} notice(s) routed to no one; those nobody owns: "
                  f"GET {report.unrouted_list}", soft_wrap=True)


def print_csv(rows: list[dict[str, Any]]) -> None:
    columns = ["organization", *_names(rows)]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(c, row.get(c)) for c in columns])


def _csv_value(name: str, value: Any) -> Any:
    if value is None:
        return 0 if name.startswith(PER_CODE) else ""
    return value


def draw_chart(reports: list[Report], path: Path, org: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    months = [r.month for r in reports]
    figures = [r.total.figures() for r in reports]

    def series(name: str) -> list[float]:
        return [math.nan if f.get(name) is None else float(f[name]) for f in figures]  # type: ignore[arg-type]

    fig, axes = plt.subplots(3, 1, figsize=(10, 11), sharex=True)
    for ax, names, label in ((axes[0], COUNTS, "count"), (axes[1], SHARES, "share (0..1)"),
                             (axes[2], SECONDS, "seconds")):
        for name in names:
            ax.plot(months, series(name), marker="o", label=name)
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.05)
    axes[2].tick_params(axis="x", rotation=45)
    fig.suptitle(f"SafeFlag governance trends {months[0]} to {months[-1]}" + (f" ({org})" if org else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(
    month: Annotated[str, typer.Option(help="calendar month, YYYY-MM (UTC)")],
    org: Annotated[str | None, typer.Option(help="one organisation only: Organization/<id>")] = None,
    format: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
    chart: Annotated[Path | None, typer.Option(help="also draw the 12 months up to --month as a PNG")] = None,
    as_of: Annotated[str | None, typer.Option(help="compute as of this instant (ISO 8601; default now)")] = None,
) -> None:
    """Governance figures for one month, per provider organisation (docs/api/referrals.md)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.clock import clock_for
    from app.safeguarding.referral_rules import organization_param

    if format not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, not '{format}'")
    try:
        month_range(month)
        ref = organization_param(org, get_settings().fhir_base) if org is not None else None
        now = datetime.fromisoformat(as_of) if as_of else clock_for(get_settings()).now()
    except FhirError as exc:
        raise fail(exc.issues[0].to_fhir()["diagnostics"]) from exc
    except ValueError as exc:
        raise fail(f"--as-of must be an ISO 8601 instant, not '{as_of}'") from exc
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if chart and not chart.parent.is_dir():  # before any work or output
        raise fail(f"--chart: {chart.parent} is not a directory")
    months = months_up_to(month, TREND_MONTHS) if chart else [month]
    try:
        reports = asyncio.run(_reports(months, ref, now))
    except (OSError, SQLAlchemyError) as exc:
        raise fail(f"cannot read the database: {describe(exc)}", 1) from exc
    current = reports[-1]
    if format == "json":
        print(json.dumps(to_rows(current), indent=2))
    elif format == "csv":
        print_csv(to_rows(current))
    else:
        print_table(current)
    if chart:
        try:
            draw_chart(reports, chart, ref)
        except OSError as exc:  # not writable, disk full...
            raise fail(f"--chart: cannot write {chart}: {exc.strerror or exc}", 1) from None
        err.print(f"chart written to {chart}", soft_wrap=True, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command(name="report")(report)

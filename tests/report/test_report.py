"""The governance report (contract section 6) against a scripted month, on both databases: the
Parameters of `GET /fhir/$governance-report`, `safeflag report` as table / JSON / CSV, the trend chart,
and the errors for bad parameters."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.context import AppContext
from app.safeguarding.report import Tally, governance_report, p95, to_rows
from tests.conftest import StepClock
from tests.referrals.support import oo, token
from tests.report.month import AS_OF, EXPECTED, UNROUTED_LIST, script

FIGURES = list(Tally().figures())


@pytest.fixture
async def month(clean_ctx: AppContext, clock: StepClock) -> AppContext:
    await script(clean_ctx, clock)
    clock.reset(AS_OF.replace(tzinfo=None) - timedelta(seconds=1))  # the server's "now" for the HTTP operation
    return clean_ctx


def rows_of(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The Parameters as the CLI's JSON objects (the same names), for comparing the two."""
    out = []
    for param in parameters.get("parameter", []):
        row: dict[str, Any] = {}
        for part in param["part"]:
            if "valueUri" in part:  # a link, not a figure: the CLI prints it below its table
                continue
            value = next(v for k, v in part.items() if k.startswith("value"))
            row[part["name"]] = value["reference"] if part["name"] == "organization" else value
        out.append(row)
    return out


async def test_http_report_matches_the_scripted_month(rclient: httpx.AsyncClient, month: AppContext) -> None:
    r = await rclient.get("/fhir/$governance-report", params={"month": "2026-01"})
    assert (r.status_code, r.headers["content-type"]) == (200, "application/fhir+json; charset=utf-8")
    assert r.json() == EXPECTED


async def test_one_organisation(rclient: httpx.AsyncClient, month: AppContext) -> None:
    r = await rclient.get("/fhir/$governance-report", params={"month": "2026-01", "organization": "Organization/sn0"})
    assert r.json() == {"resourceType": "Parameters", "parameter": [EXPECTED["parameter"][3]]}
    r = await rclient.get("/fhir/$governance-report", params={"month": "2026-01", "organization": "nobody"})
    assert r.json() == {"resourceType": "Parameters", "parameter": [{"name": "organization", "part": [
        {"name": "organization", "valueReference": {"reference": "Organization/nobody"}},
        {"name": "referral-copies", "valueInteger": 0}, {"name": "ed-notifications", "valueInteger": 0},
        {"name": "ed-overdue", "valueInteger": 0}, {"name": "ed-unrouted", "valueInteger": 0},
        {"name": "access-notifications", "valueInteger": 0}]}]}
    r = await rclient.get("/fhir/$governance-report", params={"month": "2025-06"})
    assert r.json() == {"resourceType": "Parameters"}


async def test_as_of_leaves_out_what_happened_later(month: AppContext) -> None:
    """Two days earlier the 01-29 notice was acknowledged and the 01-16 one already overdue; the review of
    the copy dated 01-25 (02-01) had not happened yet."""
    async with month.sessionmaker() as session:
        report = await governance_report(session, month.settings.fhir_base, "2026-01", "Organization/sn0",
                                         AS_OF - timedelta(days=3))
    [row] = to_rows(report)
    assert (row["referral-qa-share"], row["referral-qa-median-days"]) == (0.0, None)
    assert (row["ed-acknowledged-on-time-share"], row["ed-overdue"]) == (0.5, 1)
    assert report.total.copies == 2


async def test_bad_parameters(rclient: httpx.AsyncClient) -> None:
    cases = [
        ({}, oo("required", "SF-0951: month is required (YYYY-MM)", ["month"])),
        ({"month": "2026-13"}, oo("value", "SF-0951: month must be YYYY-MM (e.g. 2026-01), not '2026-13'", ["month"])),
        ({"month": "2026-01", "organization": "Patient/p"}, oo(
            "value", "SF-0950: organization must be a reference to an Organization (Organization/<id>), not "
                     "'Patient/p'", ["organization"])),
        ({"month": "2026-01", "org": "Organization/a"}, oo(
            "not-supported", "SF-0953: Unknown parameter 'org' for $governance-report (known: month, organization)",
            ["org"])),
    ]
    for params, expected in cases:
        r = await rclient.get("/fhir/$governance-report", params=params)
        assert (r.status_code, r.json()) == (400, expected), params
    r = await rclient.get("/fhir/$governance-report?month=2026-01&month=2026-02")
    assert (r.status_code, r.json()) == (400, oo("invalid", "SF-0952: month may be given only once", ["month"]))


async def test_only_leads_and_admins(rclient: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    hv = token(clean_ctx, "health-visitor", org="Organization/hv0")
    r = await rclient.get("/fhir/$governance-report", params={"month": "2026-01"}, headers=hv)
    assert (r.status_code, r.json()) == (403, oo("forbidden", "SF-0805: Role health-visitor may not use "
                                                              "governance-report"))
    lead = token(clean_ctx, "safeguarding-lead", org="Organization/hv0")
    assert (await rclient.get("/fhir/$governance-report", params={"month": "2026-01"}, headers=lead)).status_code == 200


def test_p95_is_nearest_rank() -> None:
    assert [p95(list(range(1, n + 1))) for n in (1, 2, 19, 20, 21, 100)] == [1, 2, 19, 19, 20, 95]
    assert p95([]) is None


def run_cli(ctx: AppContext, *args: str) -> Any:
    env = {"SAFEFLAG_DATABASE_URL": ctx.settings.effective_database_url, "SAFEFLAG_BASE_URL": ctx.settings.base_url,
           "SAFEFLAG_DATA_DIR": str(ctx.settings.data_dir)}
    return CliRunner().invoke(cli, ["report", *args], env=env)


async def test_cli_json_csv_and_table(month: AppContext) -> None:
    as_of = ["--as-of", "2026-02-03T12:00:00Z"]
    result = await asyncio.to_thread(run_cli, month, "--month", "2026-01", "--format", "json", *as_of)
    assert result.exit_code == 0, result.output
    # every contract name in every object; null where there is nothing to compute a figure from
    assert json.loads(result.stdout) == [{**dict.fromkeys(FIGURES), **row} for row in rows_of(EXPECTED)]
    result = await asyncio.to_thread(run_cli, month, "--month", "2026-01", "--format", "csv", "--org",
                                     "Organization/sn0", *as_of)
    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["organization", "referral-copies", "referral-qa-share", "referral-qa-median-days", "ed-notifications",
         "ed-delivery-median-seconds", "ed-delivery-p95-seconds", "ed-acknowledged-on-time-share", "ed-overdue",
         "ed-unrouted", "access-notifications", "referral-qa-outcome-escalated", "flags-exploitation-risk"],
        ["Organization/sn0", "2", "0.5", "7.0", "2", "4.0", "6.0", "0.5", "1", "0", "0", "1", "1"],
    ]
    result = await asyncio.to_thread(run_cli, month, "--month", "2026-01", *as_of)
    assert result.exit_code == 0, result.output
    for text in ("governance figures, 2026-01", "Northgate 0-19 Service", "Organization/la",
                 "ed-acknowledged-on-time-share", "40.0 %", "flags-looked-after-child"):
        assert text in result.stdout, text
    # the unrouted figure's list, one line below the table
    assert result.stdout.splitlines()[-1] == ("ed-unrouted: 1 notice(s) routed to no one; those nobody owns: GET "
                                              f"{UNROUTED_LIST}")


async def test_cli_chart(month: AppContext, tmp_path: Any) -> None:
    png = tmp_path / "trends.png"
    result = await asyncio.to_thread(run_cli, month, "--month", "2026-02", "--format", "json", "--chart", str(png),
                                     "--as-of", "2026-02-03T12:00:00Z")
    assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_refuses_bad_options() -> None:
    for args, message in ((["--month", "January"], "SF-0951: month must be YYYY-MM (e.g. 2026-01), not 'January'"),
                          (["--month", "2026-01", "--format", "xml"], "--format must be one of table, json, csv"),
                          (["--month", "2026-01", "--as-of", "soon"], "--as-of must be an ISO 8601 instant")):
        result = CliRunner().invoke(cli, ["report", *args])
        assert result.exit_code == 2 and message in result.output, result.output


async def test_cli_chart_to_a_bad_path(month: AppContext, tmp_path: Any) -> None:
    """One plain line on stderr, no traceback: a missing directory is refused before any work (exit 2),
    a path that cannot be written after the figures (exit 1)."""
    missing = tmp_path / ("[no]-" + "d" * 120) / ("e" * 100) / "x.png"
    result = await asyncio.to_thread(run_cli, month, "--month", "2026-02", "--chart", str(missing))
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: --chart: {missing.parent} is not a directory\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    folder = tmp_path / "already-a-directory.png"
    folder.mkdir()
    result = await asyncio.to_thread(run_cli, month, "--month", "2026-02", "--format", "json", "--chart", str(folder),
                                     "--as-of", "2026-02-03T12:00:00Z")
    assert result.exit_code == 1 and json.loads(result.stdout)  # the figures, then the failure
    assert result.stderr == f"error: --chart: cannot write {folder}: Is a directory\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)

"""End to end: `safeflag demo` (contract section 1) as a real process, on SQLite in a temp data dir and
on PostgreSQL: every step OK with what it found, exit code 0; a second run on the same database also
succeeds and seeds nothing new (update-as-create); a step that fails makes the exit code 1 and skips
only the steps that need it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import Settings
from app.context import AppContext
from app.demo import borough
from app.fhir.ids import ID
from app.fhir.nhs_number import is_valid
from app.resource_rules import resource_rules
from app.storage.tables import resource
from tests.conftest import _pg_url
from tests.e2e.server import TEST_CLOCK, safeflag_command

pytestmark = pytest.mark.e2e

STEPS = [
    "seed reference data",
    "local authority raises a child protection plan",
    "ED CP-IS check by NHS number",
    "0-19 service subscribes (rest-hook)",
    "ED attendance -> health visitor notified",
    "health visitor reads and acknowledges",
    "MASH referral copy and QA review",
]


def step_results(out: str) -> list[tuple[str, str]]:
    """(title, OK | FAILED | skipped) of each numbered step line, in order."""
    line = r"^(\d)\. (.+?)  (OK|FAILED|skipped)(?:  \d+ ms| \(needs step [\d, ]+\))$"
    found = re.findall(line, out, re.MULTILINE)
    assert [int(n) for n, _, _ in found] == list(range(1, len(found) + 1)), out
    return [(title, status) for _, title, status in found]


def table_rows(out: str) -> list[tuple[str, str, str]]:
    """(step, result, latency) rows of the summary table."""
    rows = re.findall(r"^│ (\d\. .+?)\s+│ (\S+)\s+│\s+(\S+) │$", out, re.MULTILINE)
    return [(s.strip(), r, ms) for s, r, ms in rows]


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def demo_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    workdir = Path(tempfile.mkdtemp(prefix="safeflag-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    env["SAFEFLAG_DATA_DIR"] = str(workdir / "data")
    env["SAFEFLAG_WORKDIR"] = str(workdir)  # not a setting: where run_demo runs
    env.update(SAFEFLAG_TESTING="true", SAFEFLAG_TEST_CLOCK=TEST_CLOCK.isoformat())  # never today's date
    if request.param == "pg":
        env["SAFEFLAG_DATABASE_URL"] = _pg_url(request.getfixturevalue("pg_cluster"), "demo")
    try:
        yield env
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # cwd: the temp dir, so that no local .env reaches the demo
    return subprocess.run([*safeflag_command(), "demo"], env=env, cwd=env["SAFEFLAG_WORKDIR"],
                          capture_output=True, text=True, timeout=300, check=False)


async def stored_versions(env: dict[str, str]) -> dict[str, int]:
    """`Type/id` -> current version of every resource the demo's seeding names, read from the database."""
    settings = Settings(data_dir=Path(env["SAFEFLAG_DATA_DIR"]),  # type: ignore[call-arg]
                        database_url=env.get("SAFEFLAG_DATABASE_URL"), _env_file=None)
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    try:
        async with ctx.engine.connect() as conn:
            rows = (await conn.execute(select(resource.c.res_type, resource.c.res_id, resource.c.version_id)
                                       .where(resource.c.res_id.like("demo-%")))).all()
            sub = select(resource.c.content).where(resource.c.res_type == "Subscription",
                                                   resource.c.res_id == "demo-0-19-ed-attendance")
            status = (await conn.execute(sub)).scalar_one()
    finally:
        await ctx.close()
    return {**{f"{t}/{i}": v for t, i, v in rows}, "subscription-status": status["status"]}


def test_demo_numbers_are_test_range_nhs_numbers() -> None:
    for nhs in (borough.CHILD_NHS, borough.MOTHER_NHS):
        assert nhs.startswith("999") and is_valid(nhs), nhs


async def test_demo_plays_the_whole_story_twice(demo_env: dict[str, str]) -> None:
    first = await asyncio.to_thread(run_demo, demo_env)
    out = first.stdout
    assert first.returncode == 0, out + first.stderr
    assert "Traceback" not in first.stderr, first.stderr
    assert step_results(out) == [(title, "OK") for title in STEPS]
    assert [(s, r) for s, r, _ in table_rows(out)] == [(f"{n}. {t}", "OK") for n, t in enumerate(STEPS, 1)]
    assert all(ms.isdigit() for _, _, ms in table_rows(out)), out
    for line in [
        r"   11 resources by PUT: 11 created, 0 already there",
        rf"   Flag/{ID} child-protection-plan for Patient/demo-child, author Organization/demo-la: raised",
        (r"   1 active flag\(s\) for NHS 9990000166; owner Demo Borough Children's Services: "
         r"office hours 01632 960101, out of hours 01632 960199"),
        rf"   access notification Communication/{ID} to Organization/demo-la \(sent by this check\)",
        (r"   Subscription/demo-0-19-ed-attendance: ed-attendance, recipient=PractitionerRole/demo-hv, "
         r"to http://127\.0\.0\.1:\d+/hook; handshake signed, status active"),
        (rf"   Encounter/{ID} \(EMER\) -> Communication/{ID} ed-attendance, priority urgent, "
         r"to PractitionerRole/demo-hv"),
        r"   signed notification arrived \d+ ms after the POST \((within|OVER) the 1 s target\)",
        rf"   read Communication/{ID}: 'ED attendance on \S+ \(routed via care-team\)'",
        rf"   Task/{ID} acknowledge \(due \S+\) -> completed by PractitionerRole/demo-hv",
        (rf"   Binary/{ID}, DocumentReference/{ID}, Communication/{ID} \(size \d+, SHA-1 \S+=\) "
         r"to Organization/demo-mash"),
        rf"   Task/{ID} referral-qa completed: clear-and-complete, by PractitionerRole/demo-lead",
        # where to see it in a browser (the web app's development sign-in)
        r"See it in the browser: start the server with development sign-in, SAFEFLAG_WEB_DEV_SIGN_IN=1 \S*safeflag serve, then open",
        r"   http://127\.0\.0\.1:8080/app/sign-in and sign in as one of:",
        r"   Hana Visitor \(health visitor, Demo 0-19 Service\)",
        r"   Morgan Mash \(MASH practitioner, Demo Borough MASH\)",
        r"demo complete: every step OK",
    ]:
        assert re.search(f"^{line}$", out, re.MULTILINE), f"missing line {line!r} in:\n{out}"
    # the notification's latency is the step's latency in the table
    arrived = re.search(r"notification arrived (\d+) ms", out)
    assert arrived and table_rows(out)[4][2] == arrived.group(1)
    seeded = await stored_versions(demo_env)

    # an hour later on the same day (the clock goes on, never back)
    demo_env["SAFEFLAG_TEST_CLOCK"] = (TEST_CLOCK + timedelta(hours=1)).isoformat()
    second = await asyncio.to_thread(run_demo, demo_env)
    again = second.stdout
    assert second.returncode == 0, again + second.stderr
    assert step_results(again) == [(title, "OK") for title in STEPS]
    assert re.search(r"^   11 resources by PUT: 0 created, 11 already there$", again, re.MULTILINE), again
    assert re.search(r": already active \(If-None-Exist returned it\)$", again, re.MULTILINE), again
    flags = re.findall(rf"^   Flag/({ID}) child-protection-plan", out + again, re.MULTILINE)
    assert len(flags) == 2 and flags[0] == flags[1]
    # one access notification per child per day
    assert re.search(r"\(already sent today at 10:\d\d:\d\dZ: one a day\)$", again, re.MULTILINE), again
    # seeding changed nothing (an update with the same content makes no new version); the subscription
    # was re-pointed at the new receiver, then switched off again at the end of each run
    after = await stored_versions(demo_env)
    reference = {k: v for k, v in seeded.items() if not k.startswith(("Subscription", "subscription"))}
    assert {k: after[k] for k in reference} == reference and set(reference.values()) == {1}
    assert len(reference) == 11
    assert seeded["subscription-status"] == after["subscription-status"] == "off"


async def test_a_failing_step_fails_the_demo_and_skips_what_needs_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEFLAG_")}
    # rest-hooks may not go to the demo's receiver on 127.0.0.1: the subscription is refused
    env.update(SAFEFLAG_DATA_DIR=str(tmp_path / "data"), SAFEFLAG_WEBHOOK_ALLOW="hooks.example.org",
               SAFEFLAG_WORKDIR=str(tmp_path))
    result = await asyncio.to_thread(run_demo, env)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert step_results(out) == [
        (STEPS[0], "OK"), (STEPS[1], "OK"), (STEPS[2], "OK"), (STEPS[3], "FAILED"),
        (STEPS[4], "skipped"), (STEPS[5], "skipped"), (STEPS[6], "OK"),
    ]
    assert re.search(r"^   PUT /Subscription/demo-0-19-ed-attendance: HTTP 422: SF-0707: Endpoint "
                     r"'127\.0\.0\.1:\d+' is not in SAFEFLAG_WEBHOOK_ALLOW \(entries are host:port, or a host "
                     r"for its scheme's default port\)$", out, re.MULTILINE), out
    assert "5. ED attendance -> health visitor notified  skipped (needs step 4)" in out
    assert [(s, r) for s, r, _ in table_rows(out)][3:6] == [
        (f"4. {STEPS[3]}", "FAILED"), (f"5. {STEPS[4]}", "skipped"), (f"6. {STEPS[5]}", "skipped")]
    assert out.rstrip().endswith("demo failed")

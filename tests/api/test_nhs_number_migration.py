"""A database that already holds live Patients sharing an NHS number (written before NHS numbers were
unique): `safeflag patients duplicates` lists them before migrating, the migration refuses with the
same list and changes nothing, and once a data owner has resolved them it fills the new table.
Both databases, through the real typer app and the real migrations."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.cli import app
from app.storage.db import create_engine
from app.storage.migrate import current_revision, head_revision, upgrade
from app.storage.nhs_numbers import DuplicateNhsNumbers
from app.storage.tables import idx_token, patient_nhs_number, resource
from tests.conftest import _pg_url
from tests.support.fhir_data import NHS

PREVIOUS = "20261206_0005"  # the revision before NHS numbers became unique
runner = CliRunner()
PATIENTS = [("amy", "9990000018"), ("child-1", "9990000018"), ("ben", "9990000026")]
REFUSAL = (
    "2 live Patients share 1 NHS number(s); a live Patient's NHS number must be unique, so this migration "
    "changed nothing:\n"
    "  NHS number  Patient\n"
    "  ******0018  Patient/amy\n"
    "  ******0018  Patient/child-1\n"
    "Resolve each (keep one record, move references to it, delete the others as admin), then migrate again. "
    "`safeflag patients duplicates` lists them."
)


async def _build(url: str) -> None:
    """A database at the previous revision holding what that schema let the server write: Amy and
    child-1 with one NHS number, Ben alone, and a deleted Patient (no index rows) with Ben's."""
    engine = create_engine(url)
    try:
        await upgrade(engine, PREVIOUS)
        async with engine.begin() as conn:
            for res_id, nhs in [*PATIENTS, ("gone", "9990000026")]:
                content = {"resourceType": "Patient", "id": res_id, "identifier": [{"system": NHS, "value": nhs}]}
                pk = (await conn.execute(resource.insert().returning(resource.c.pk), {
                    "res_type": "Patient", "res_id": res_id, "version_id": 1, "deleted": res_id == "gone",
                    "last_updated": datetime(2026, 1, 5, 9, 0, 0), "content": content})).scalar_one()
                if res_id != "gone":
                    await conn.execute(idx_token.insert(), [
                        {"resource_pk": pk, "res_type": "Patient", "param": "identifier", "system": NHS, "code": nhs},
                        {"resource_pk": pk, "res_type": "Patient", "param": "identifier", "system": None, "code": nhs},
                    ])
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def old_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        url = _pg_url(request.getfixturevalue("pg_cluster"), f"nhs_{uuid.uuid4().hex[:10]}")
    asyncio.run(_build(url))
    monkeypatch.setenv("SAFEFLAG_DATABASE_URL", url)
    monkeypatch.setenv("SAFEFLAG_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no stray .env
    return url


async def _state(url: str) -> tuple[str | None, bool, list[tuple[str, str]]]:
    """(revision, whether patient_nhs_number exists, its rows as (number, Patient id))."""
    engine: AsyncEngine = create_engine(url)
    try:
        async with engine.connect() as conn:
            revision = await current_revision(conn)
            exists = await conn.run_sync(lambda c: inspect(c).has_table("patient_nhs_number"))
            rows = []
            if exists:
                stmt = (select(patient_nhs_number.c.nhs_number, resource.c.res_id)
                        .join(resource, resource.c.pk == patient_nhs_number.c.resource_pk)
                        .order_by(patient_nhs_number.c.nhs_number))
                rows = [(n, i) for n, i in (await conn.execute(stmt)).all()]
            return revision, exists, rows
    finally:
        await engine.dispose()


async def _delete_child_1(url: str) -> None:
    """What the data owner's `DELETE Patient/child-1` (role admin) does to these tables."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            pk = (await conn.execute(select(resource.c.pk).where(resource.c.res_id == "child-1"))).scalar_one()
            await conn.execute(update(resource).where(resource.c.pk == pk).values(deleted=True, version_id=2))
            await conn.execute(idx_token.delete().where(idx_token.c.resource_pk == pk))
    finally:
        await engine.dispose()


def test_duplicates_are_listed_before_migrating_masked_unless_asked(old_db: str) -> None:
    result = runner.invoke(app, ["patients", "duplicates"])
    assert result.exit_code == 1
    assert result.stdout == (
        "NHS number  Patient\n"
        "******0018  Patient/amy\n"
        "******0018  Patient/child-1\n"
        "2 live Patients share 1 NHS number(s). Keep one record per child: move the references to it, delete "
        "the others (role admin), then run `safeflag migrate`.\n"
    )
    assert result.stderr == ""
    full = runner.invoke(app, ["patients", "duplicates", "--full-numbers"])
    assert full.exit_code == 1
    assert full.stdout.splitlines()[1:3] == ["9990000018  Patient/amy", "9990000018  Patient/child-1"]


def test_the_migration_refuses_and_changes_nothing(old_db: str) -> None:
    engine = create_engine(old_db)

    async def run() -> None:
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    with pytest.raises(DuplicateNhsNumbers) as refused:
        asyncio.run(run())
    assert str(refused.value) == REFUSAL
    assert asyncio.run(_state(old_db)) == (PREVIOUS, False, [])
    # the same through `safeflag migrate`: the list, no traceback, exit 1, still nothing changed
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 1
    assert result.stderr == f"cannot migrate the database: {REFUSAL}\n"
    assert "9990000018" not in result.stderr
    assert asyncio.run(_state(old_db)) == (PREVIOUS, False, [])


def test_once_resolved_the_migration_fills_the_table(old_db: str) -> None:
    asyncio.run(_delete_child_1(old_db))
    listed = runner.invoke(app, ["patients", "duplicates"])
    assert (listed.exit_code, listed.stdout) == (0, "No two live Patients share an NHS number.\n")
    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.stderr
    assert asyncio.run(_state(old_db)) == (
        head_revision(), True, [("9990000018", "amy"), ("9990000026", "ben")])
    again = runner.invoke(app, ["patients", "duplicates"])  # after migrating too
    assert (again.exit_code, again.stdout) == (0, "No two live Patients share an NHS number.\n")


def test_duplicates_on_a_database_without_tables_is_one_plain_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFLAG_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.setenv("SAFEFLAG_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["patients", "duplicates"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: cannot read the database: OperationalError: (sqlite3.OperationalError) no such table: idx_token\n")

"""Records kept in memory between requests (app/storage/contents.py). On both databases a search returns
each record as it is stored now; on PostgreSQL the rows of a search come without their JSON, which is
read in one more statement only for the records this process has not read before, at that version."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from app.context import AppContext
from app.fhir.search.params import parse_search
from app.interactions.unit_of_work import repository
from app.search.executor import run_search
from app.storage import contents
from app.stored import StoredResource

BASE = "http://127.0.0.1:8080/fhir"


@contextmanager
def contents_read(ctx: AppContext) -> Iterator[list[list[int]]]:
    """The pks of each statement that read records' JSON after their rows (PostgreSQL only)."""
    reads: list[list[int]] = []

    def record(_conn: Any, _cur: Any, sql: str, params: Any, *_a: Any) -> None:
        if "pg_column_size(" in sql:
            reads.append(sorted(params[0] if isinstance(params, tuple) else params["pks"]))

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield reads
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)


def pg(ctx: AppContext) -> bool:
    return ctx.engine.dialect.name == "postgresql"


async def organizations(ctx: AppContext, query: list[tuple[str, str]] | None = None) -> list[StoredResource]:
    async with ctx.sessionmaker() as session, session.begin():
        req = parse_search("Organization", [*(query or []), ("_count", "100")], base=BASE)
        return (await run_search(session, req)).matches


async def create(ctx: AppContext, name: str, **extra: Any) -> StoredResource:
    async with ctx.sessionmaker() as session, session.begin():
        repo = repository(ctx, session)
        made = await repo.create("Organization", {"resourceType": "Organization", "name": name, **extra},
                                 validated=True)
        await repo.flush()
        return made


async def rename(ctx: AppContext, current: StoredResource, name: str) -> StoredResource:
    async with ctx.sessionmaker() as session, session.begin():
        repo = repository(ctx, session)
        done = await repo.update(current, {**current.content, "name": name}, validated=True)
        await repo.flush()
        return done


async def test_a_record_is_read_whole_once_then_kept_until_it_changes(clean_ctx: AppContext) -> None:
    org = await create(clean_ctx, "Demo 0-19 service")
    with contents_read(clean_ctx) as reads:
        assert [o.content["name"] for o in await organizations(clean_ctx)] == ["Demo 0-19 service"]
        assert [o.content["name"] for o in await organizations(clean_ctx)] == ["Demo 0-19 service"]
    assert reads == ([[org.pk]] if pg(clean_ctx) else [])  # the first search only
    renamed = await rename(clean_ctx, org, "Demo 0-19 health visiting")
    with contents_read(clean_ctx) as reads:
        [found] = await organizations(clean_ctx)
    assert (found.content["name"], found.version_id, found.content["meta"]["versionId"]) == (
        "Demo 0-19 health visiting", 2, "2")
    assert found.content == renamed.content
    assert reads == ([[org.pk]] if pg(clean_ctx) else [])  # a new version: read again


async def test_a_version_rolled_back_is_never_taken_for_the_same_version_written_again(clean_ctx: AppContext) -> None:
    """Version 2 written, read (and so kept) and rolled back; version 2 written again with other content:
    a search returns the committed one. The kept row is keyed by the transaction that wrote it."""
    org = await create(clean_ctx, "Demo MASH")
    async with clean_ctx.sessionmaker() as session, session.begin():
        repo = repository(clean_ctx, session)
        await repo.update(org, {**org.content, "name": "Never committed"}, validated=True)
        await repo.flush()
        req = parse_search("Organization", [("_count", "100")], base=BASE)
        [seen] = (await run_search(session, req)).matches
        assert (seen.version_id, seen.content["name"]) == (2, "Never committed")  # its own write
        await session.rollback()
    await rename(clean_ctx, org, "Demo Borough MASH")
    [found] = await organizations(clean_ctx)
    assert (found.version_id, found.content["name"]) == (2, "Demo Borough MASH")


async def test_a_kept_record_changed_in_place_is_caught(clean_ctx: AppContext) -> None:
    """Nothing may change a record it was given: the kept copy is every later reader's. The test suite
    compares each kept record with its JSON as first read whenever it is taken."""
    await create(clean_ctx, "Demo ED")
    [first] = await organizations(clean_ctx)
    first.content["name"] = "Changed by a careless reader"
    assert contents.changed_in_place() == ([first.pk] if pg(clean_ctx) else [])  # as every test's end asks
    if pg(clean_ctx):
        with pytest.raises(AssertionError, match=f"kept content of row {first.pk} was changed in place"):
            await organizations(clean_ctx)
    else:  # SQLite keeps nothing: the next search decodes the stored JSON again
        [again] = await organizations(clean_ctx)
        assert again.content["name"] == "Demo ED"
    first.content["name"] = "Demo ED"  # as it was, for the check at the end of the test
    assert contents.changed_in_place() == []


async def test_a_large_record_is_read_whole_every_time(clean_ctx: AppContext) -> None:
    # random text does not compress: stored well over the largest size kept
    aliases = [secrets.token_hex(512) for _ in range(2 * contents.LARGEST_KEPT // 1024)]
    big = await create(clean_ctx, "Demo school nursing", alias=aliases)
    small = await create(clean_ctx, "Demo sexual health")
    with contents_read(clean_ctx) as reads:
        for _ in range(3):
            found = await organizations(clean_ctx)
            assert [(o.id, len(o.content.get("alias", []))) for o in found] == [(big.id, len(aliases)), (small.id, 0)]
    assert reads == ([[big.pk, small.pk], [big.pk], [big.pk]] if pg(clean_ctx) else [])


async def test_what_is_kept_is_bounded_by_the_records_stored_size(
        clean_ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    made = [await create(clean_ctx, f"Demo team {i}", alias=[f"team {i} " + "x" * 300]) for i in range(10)]
    monkeypatch.setattr(contents, "KEPT_BYTES", 2000)  # room for some of the ten (each ~0.4 KB stored)
    with contents_read(clean_ctx) as reads:
        for _ in range(2):
            assert [o.id for o in await organizations(clean_ctx)] == [m.id for m in made]
    if not pg(clean_ctx):
        assert reads == []
        return
    first, second = reads
    assert first == sorted(m.pk for m in made)
    # the oldest taken were dropped to make room for the newest: those are read again, the rest were kept
    assert 0 < len(second) < 10 and second == first[:len(second)]

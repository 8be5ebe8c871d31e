"""`AuditEvent?type=` and `?subtype=` answered off the trail's coding rows (app/security/audit_trail.py
`coded_refs`, app/security/audit_search.py), checked three ways on both databases:

- over a generated trail with several types and subtypes (the server's REST and sign-in codes, a coding
  without a system, one code in two systems, several subtypes, systems and codes holding `|`), every
  `type`/`subtype` search answers what the generic FHIR search answers over the same events stored as
  ordinary resources (a transaction of the test's own, never committed), and each plain code or
  system-and-code criterion is answered in SQL rather than by reading every event's JSON;
- `safeflag audit verify` reports a coding row that no longer matches its event's JSON (changed, added
  to, removed) at the event's position, and coding rows of an event the trail does not hold;
- the upgrade to 20261207_0019 adds the coding rows of events written before it, after which the
  searches and the verifier agree.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.context import AppContext
from app.search.executor import run_search
from app.security import audit_search
from app.security.audit import audit_for
from app.security.audit_trail import append, coded_refs, linked_refs, search_rows
from app.security.audit_verify import verify
from app.security.guard import Restriction
from app.storage.audit_tables import GENESIS, audit_event, audit_event_ref, audit_row
from app.storage.buffer import flush
from app.storage.migrate import upgrade
from app.stored import format_instant
from tests.safeguarding.support import LA
from tests.security.test_audit_search import BASE, _answer, _parse, principal, store_as_resources, trail
from tests.security.test_audit_trail import _tampered
from tests.support.fresh_db import fresh_context
from tests.support.postgres import PgCluster

_DATABASES = itertools.count()
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RT = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RI = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CHILDREN = ["Patient/child-a", "Patient/child-b"]
TYPES: list[dict[str, str] | None] = [
    {"system": RT, "code": "rest"}, {"system": DCM, "code": "110114"}, {"code": "rest"},
    {"system": "urn:x", "code": "rest"}, {"system": "urn:a|b", "code": "c"}, {"system": "urn:a", "code": "b|c"}, None]
SUBTYPES: list[list[dict[str, str]]] = [
    [{"system": RI, "code": "read"}], [{"system": RI, "code": "search-type"}], [{"system": DCM, "code": "110122"}],
    [{"system": RI, "code": "read"}, {"system": RI, "code": "create"}], [], [{"code": "read"}],
    [{"system": RI, "code": "read"}, {"system": "urn:other", "code": "read"}], [{"system": "urn:x"}]]
QUERIES: list[list[tuple[str, str]]] = [
    *([("type", t)] for t in ("rest", f"{RT}|rest", "|rest", "urn:x|rest", "urn:a|b|c", "urn:a\\|b|c", "110114",
                              f"{DCM}|110114", "rest,110114", f"{RT}|rest,{DCM}|110114", "nothing", f"{RT}|nothing")),
    *([("subtype", s)] for s in ("read", f"{RI}|read", "|read", "urn:other|read", "read,create", "create", "110122",
                                 f"{DCM}|110122,search-type", "nothing")),
    [("type", "rest"), ("subtype", "read")], [("type", "110114"), ("patient", CHILDREN[0])],
    [("type", "rest"), ("_count", "3"), ("_offset", "2")], [("subtype", "read"), ("_summary", "count")],
    [("type", "rest"), ("_sort", "-date"), ("_count", "4")], [("subtype", "read"), ("_total", "none"), ("_count", "2")],
    [("type", "rest"), ("_count", "0")],
]
# answered off the JSON as before: a system alone, modifiers
JSON_QUERIES: list[list[tuple[str, str]]] = [
    [("type", f"{RT}|")], [("subtype", "urn:x|")], [("type:not", "rest")], [("subtype:not", "read")],
    [("type:missing", "true")], [("subtype:missing", "false")]]


def _event(i: int) -> dict[str, Any]:
    at = START + timedelta(seconds=i)
    doc = audit_for(interaction="read" if i % 2 else "search-type", principal=principal("lead"), recorded=at,
                    resource_type="Flag", res_id=None if i % 2 == 0 else f"flag-{i}", version_id=None if i % 2 == 0 else 1,
                    patients=[CHILDREN[i % 2]], query="Flag?patient=x" if i % 2 == 0 else None)
    coding = TYPES[i % len(TYPES)]
    doc.pop("type", None)
    if coding is not None:
        doc["type"] = coding
    doc["subtype"] = SUBTYPES[i % len(SUBTYPES)]
    stamp = format_instant(at.replace(tzinfo=None))
    return {"resourceType": "AuditEvent", "id": f"ev-{i:03d}", "meta": {"versionId": "1", "lastUpdated": stamp},
            **{k: v for k, v in doc.items() if k not in ("resourceType", "id", "meta")}}


async def _generated(ctx: AppContext, n: int = 56) -> None:
    """`n` events appended as the server appends them, every type with every subtype."""
    async with ctx.sessionmaker() as session, session.begin():
        for i in range(n):
            content = _event(i)
            await append(session, content, event_id=content["id"], recorded=(START + timedelta(seconds=i)).replace(
                tzinfo=None), org=LA, base=BASE)
        await flush(session)


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def db(request: pytest.FixtureRequest, pg_cluster: PgCluster | None) -> Any:
    async with fresh_context(request.param, pg_cluster, f"safeflag_audit_codes_{next(_DATABASES)}") as ctx:
        yield ctx


async def _compare(ctx: AppContext) -> int:
    """Every query's answer against the generic search's; how many found something."""
    found = 0
    async with ctx.sessionmaker() as session:
        await store_as_resources(ctx, session, await trail(session))
        for name in ("admin", "lead", "reads-only"):
            who = principal(name)
            for query in QUERIES + JSON_QUERIES:
                req = _parse(ctx, "AuditEvent", query)
                ref = await run_search(session, req, max_includes=10, restrict=Restriction(who))
                new = await audit_search.search(session, req, who, base=BASE, max_includes=10, restrict=Restriction(who))
                assert _answer(new) == _answer(ref), (name, query)
                found += bool(ref.matches or ref.total)
        await session.rollback()
    return found


async def test_type_and_subtype_searches_answer_as_the_generic_search_does(db: AppContext) -> None:
    await upgrade(db.engine)
    await _generated(db)
    assert await _compare(db) > 60
    for query in QUERIES:  # each plain code criterion is a condition on the coding rows, not a JSON scan
        req = _parse(db, "AuditEvent", query)
        coded = [c for c in req.criteria if c.name in ("type", "subtype")]
        assert coded and all(audit_search.column_condition(c) is not None for c in coded), query
    for query in JSON_QUERIES:
        assert all(audit_search.column_condition(c) is None for c in _parse(db, "AuditEvent", query).criteria), query
    async with db.engine.connect() as conn:
        assert (await conn.run_sync(verify)).clean


async def test_each_event_has_its_coding_rows(db: AppContext) -> None:
    """Two rows per coding (the code; the system and code), each once, beside its reference rows."""
    await upgrade(db.engine)
    await _generated(db, 8)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(audit_event_ref.c.param, audit_event_ref.c.ref)
                                   .where(audit_event_ref.c.event_id == "ev-006"))).all()
    assert sorted((p, r) for p, r in rows if p in ("type", "type|", "subtype", "subtype|")) == [
        ("subtype", "read"), ("subtype|", f'["{RI}","read"]'), ("subtype|", '["urn:other","read"]')]
    assert sorted(r["ref"] for r in coded_refs(_event(3), "ev-003")) == sorted([
        "rest", '["urn:x","rest"]', "read", "create", f'["{RI}","read"]', f'["{RI}","create"]'])
    assert coded_refs(_event(7), "ev-007") == [  # a coding without a code: no row (no search matches it)
        {"param": "type", "ref": "rest", "event_id": "ev-007"},
        {"param": "type|", "ref": f'["{RT}","rest"]', "event_id": "ev-007"}]


async def test_verify_reports_coding_rows_that_disagree_with_the_event(db: AppContext) -> None:
    await upgrade(db.engine)
    await _generated(db, 12)
    async with db.engine.connect() as conn:
        positions = {row.event_id: (row.lane, row.position) for row in
                     (await conn.execute(select(audit_event.c.event_id, audit_event.c.lane, audit_event.c.position)))}
        assert (await conn.run_sync(verify)).clean
    r = audit_event_ref.c

    def at(event_id: str) -> str:
        lane, position = positions[event_id]
        return f"lane {lane} position {position}"

    async def change_subtype(conn: AsyncConnection, _rows: list[Any]) -> None:  # ev-000 shown as a create
        await conn.execute(update(audit_event_ref).where(r.event_id == "ev-000", r.param == "subtype")
                           .values(ref="create"))

    async def add_type(conn: AsyncConnection, _rows: list[Any]) -> None:  # ev-002 found by type=110114
        await conn.execute(insert(audit_event_ref).values(param="type", ref="110114", event_id="ev-002"))

    async def remove_type(conn: AsyncConnection, _rows: list[Any]) -> None:  # ev-001 hidden from type=110114
        await conn.execute(delete(audit_event_ref).where(r.event_id == "ev-001", r.param.in_(("type", "type|"))))

    async def orphan(conn: AsyncConnection, _rows: list[Any]) -> None:
        await conn.execute(insert(audit_event_ref).values(param="subtype", ref="read", event_id="ev-999"))

    altered = "altered (they do not match the AuditEvent)"
    cases = {
        change_subtype: [f"{at('ev-000')}: column(s) subtype {altered}"],
        add_type: [f"{at('ev-002')}: column(s) type {altered}"],
        remove_type: [f"{at('ev-001')}: column(s) type {altered}"],
        orphan: ["AuditEvent/ev-999: type/subtype search rows of an event the trail does not hold (its row was "
                 "removed, or they were inserted)"],
    }
    for tamper, expected in cases.items():
        assert (await _tampered(db, tamper)).findings == expected, tamper.__name__
    async with db.engine.connect() as conn:  # each tampering was rolled back
        assert (await conn.run_sync(verify)).clean


async def test_the_upgrade_adds_the_coding_rows_of_events_written_before_it(db: AppContext) -> None:
    """Events appended at 20261206_0018 (reference rows only, as that revision wrote them) get their coding
    rows from the upgrade; searches then answer as the generic search does and the trail verifies."""
    await upgrade(db.engine, "20261206_0018")
    prev = GENESIS
    async with db.engine.begin() as conn:
        for i in range(56):
            content = _event(i)
            row = audit_row(0, i + 1, prev, content["id"], (START + timedelta(seconds=i)).replace(tzinfo=None), LA,
                            content)
            prev = row["hash"]
            await conn.execute(insert(audit_event), [row])
            await conn.execute(insert(audit_event_ref), linked_refs(content, content["id"], BASE))
    async with db.engine.connect() as conn:
        before = (await conn.run_sync(verify)).findings
    coded = [i for i in range(56) if coded_refs(_event(i), "x")]  # all but the events without any code
    assert len(coded) == 54 and [f.split(":")[0] for f in before] == [f"lane 0 position {i + 1}" for i in coded]
    assert all(" altered (they do not match the AuditEvent)" in f for f in before)
    await upgrade(db.engine)
    async with db.engine.connect() as conn:
        refs = sorted((await conn.execute(select(audit_event_ref.c.param, audit_event_ref.c.ref,
                                                 audit_event_ref.c.event_id))).all())
        assert (await conn.run_sync(verify)).clean
    assert refs == sorted((r["param"], r["ref"], r["event_id"]) for i in range(56)
                          for r in search_rows(_event(i), f"ev-{i:03d}", BASE))
    assert await _compare(db) > 60

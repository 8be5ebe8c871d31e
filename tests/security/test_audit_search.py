"""AuditEvent search and read from the audit trail's own table (app/security/audit_search.py) answer
exactly what the generic search over the AuditEvent resources answered: over a varied history made
through the API (several organisations and roles, a sexual-health service whose accesses are restricted,
refusals, searches that showed several children), a battery of searches (every parameter, modifiers,
chains, sorts, paging, totals, `_include`) is run by several readers, one of whom must not see the
restricted events, on both paths; both databases."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from app.context import AppContext
from app.fhir.nhs_number import check_digit
from app.fhir.search.params import parse_search
from app.fhir.search.results import SearchResult
from app.main import create_app
from app.search.executor import run_search
from app.security import audit_search
from app.security.guard import Restriction
from app.security.principal import Principal
from app.storage.migrate import upgrade
from app.storage.tables import resource
from tests.conftest import BASE_URL, StepClock, admin_token
from tests.notify.owners import bearer
from tests.safeguarding.support import CHILD, ED, LA, NHS, borough, flag, organization, patient, post, put
from tests.support.fresh_db import fresh_context
from tests.support.postgres import PgCluster

SH, EPR = "Organization/sh", "Organization/epr"
BASE = BASE_URL + "/fhir"
_DATABASES = itertools.count()

# readers of the trail: (role, sub, org, scope); the EPR's system client is not cleared for restricted records
READERS = {
    "admin": ("admin", "test-admin", None, None),
    "lead": ("safeguarding-lead", "lead-1", "Organization/elsewhere", None),
    "epr": ("system", "epr", EPR, "system/AuditEvent.rs system/Flag.rs system/Patient.rs"),
    "sh-system": ("system", "sh-epr", SH, "system/AuditEvent.rs"),
    "reads-only": ("system", "reads", EPR, "system/AuditEvent.rs?subtype=read system/Patient.rs"),
    "ed": ("ed-clinician", "ed-1", ED, None),
}


def nhs(n: int) -> str:
    stem = f"999{n:06d}"
    return stem + str(check_digit(stem))


def principal(name: str) -> Principal:
    role, sub, org, scope = READERS[name]
    from app.security.tokens import default_scope
    claims = {"sub": sub, "role": role, "scope": scope or default_scope(role), "iss": "test", "org": org}
    return Principal.from_claims({k: v for k, v in claims.items() if v}, base=BASE)


@asynccontextmanager
async def trail_db(db: str, pg_cluster: PgCluster | None, prefix: str
                   ) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    """A migrated database of its own on a step clock, and an admin API client."""
    async with fresh_context(db, pg_cluster, f"{prefix}_{next(_DATABASES)}") as ctx:
        ctx.clock = StepClock()  # every audited access at its own second, `recorded` and `lastUpdated` apart
        await upgrade(ctx.engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)), base_url=BASE_URL,
                                     headers={"Authorization": f"Bearer {admin_token(ctx)}"}) as api:
            yield ctx, api


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def fresh(request: pytest.FixtureRequest, pg_cluster: PgCluster | None
                ) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    async with trail_db(request.param, pg_cluster, "safeflag_audit_search") as pair:
        yield pair


async def _history(api: httpx.AsyncClient, ctx: AppContext) -> list[str]:
    """Writes, reads, searches, histories and refusals by several organisations; the children's refs."""
    await borough(api)
    await put(api, organization("sh", "Sexual health service"))
    await put(api, organization("epr", "An EPR supplier"))
    children = [CHILD]
    for n in range(3):
        children.append(f"Patient/{(await post(api, patient(f'kid-{n}', nhs(900 + n), '2022-01-0' + str(n + 1))))['id']}")
    ed = bearer(ctx, "ed-clinician", "ed-1", ED)
    hv = bearer(ctx, "health-visitor", "hv-1", "Organization/example-zero-to-nineteen")
    sh = bearer(ctx, "sexual-health-clinician", "sh-1", SH)
    lead = bearer(ctx, "safeguarding-lead", "lead-1", LA)
    flags = [(await post(api, flag("child-protection-plan", children[1])))["id"],
             (await post(api, flag("looked-after-child", children[2]), ed))["id"]]
    hidden = (await post(api, flag("exploitation-risk", CHILD, SH), sh))["id"]
    hidden2 = (await post(api, flag("exploitation-risk", children[3], SH), sh))["id"]
    for headers, url, status in [
        (ed, f"/fhir/Flag/{flags[0]}", 200), (ed, f"/fhir/Flag/{hidden}", 403), (lead, f"/fhir/Flag/{hidden}", 200),
        (hv, f"/fhir/{children[2]}", 200), (sh, f"/fhir/Flag/{hidden2}", 200), (ed, "/fhir/Patient/nobody", 404),
        (lead, f"/fhir/Flag/{flags[1]}/_history", 200), (ed, "/fhir/AuditEvent", 403),
        (lead, "/fhir/Flag?category=" + "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category|"
         "exploitation-risk", 200),
        (ed, "/fhir/Flag?_count=50", 200), (sh, f"/fhir/Flag?patient={CHILD}", 200),
        (ed, f"/fhir/Flag?patient={CHILD}", 200), (hv, f"/fhir/Patient?identifier={NHS}|{nhs(901)}", 200),
        (lead, f"/fhir/AuditEvent?patient={CHILD}", 200), (ed, f"/fhir/Flag/{flags[1]}", 200),
        (hv, f"/fhir/Flag/{hidden2}", 403),
    ]:
        r = await api.get(url, headers=headers)
        assert r.status_code == status, (url, r.text)
    assert (await api.delete(f"/fhir/Flag/{flags[0]}", headers=ed)).status_code == 405
    return children


def _battery(events: list[dict[str, Any]], children: list[str]) -> list[list[tuple[str, str]]]:
    """Searches built from what the history holds: every parameter, with values that match and that don't."""
    recorded = sorted(e["recorded"] for e in events)
    middle, early = recorded[len(recorded) // 2], recorded[3]
    agents = sorted({a["who"]["reference"] for e in events for a in e["agent"] if "reference" in a.get("who", {})})
    entities = sorted({x["what"]["reference"] for e in events for x in e.get("entity", [])
                       if "reference" in x.get("what", {})})
    flags = [x for x in entities if x.startswith("Flag/")]
    qs: list[list[tuple[str, str]]] = [[]]
    qs += [[("patient", c)] for c in children] + [[("patient", CHILD.split("/")[1])], [("patient", "Patient/nobody")]]
    qs += [[("patient", ",".join(children[1:3]))], [("patient", BASE + "/" + CHILD)], [("patient:Patient", CHILD)]]
    qs += [[("agent", a)] for a in agents] + [[("entity", x)] for x in entities[:12]]
    qs += [[("entity:Flag", flags[0].split("/")[1])], [("entity", flags[0].split("/")[1])]]
    qs += [[("date", f"{p}{v}")] for p in ("", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
           for v in (middle, middle[:19], middle[:16], middle[:10], middle[:19] + "+01:00")]
    qs += [[("date", f"ge{early}"), ("date", f"lt{middle}")], [("date", f"gt{middle[:19]}.0004")]]
    qs += [[("subtype", s)] for s in ("read", "search-type", "create", "read,create", "history-instance",
                                      "http://hl7.org/fhir/restful-interaction|read", "|read", "nothing")]
    qs += [[("type", t)] for t in ("rest", "http://terminology.hl7.org/CodeSystem/audit-event-type|rest", "110114")]
    qs += [[("action", a)] for a in ("R", "C", "E", "R,C", "http://hl7.org/fhir/audit-event-action|R", "X")]
    qs += [[("outcome", o)] for o in ("0", "4", "0,4", "8")] + [[("outcome:not", "0")], [("action:not", "R")]]
    qs += [[("patient:missing", "true")], [("patient:missing", "false")], [("entity:missing", "true")]]
    qs += [[("patient:identifier", f"{NHS}|{nhs(901)}")], [("patient.identifier", f"{NHS}|{nhs(902)}")],
           [("entity-role", "1")], [("entity-type", "Flag")], [("altid", "ed-1")], [("agent-name", "lead")],
           [("_id", events[5]["id"])], [("_id", f"{events[1]['id']},{events[7]['id']}")],
           [("_lastUpdated", f"ge{middle[:19]}")], [("subtype:not", "read")], [("address", "127.0.0.1")]]
    qs += [[("patient", CHILD), ("subtype", "read")], [("patient", CHILD), ("date", f"ge{early}"), ("date", f"le{middle}")],
           [("agent", agents[0]), ("action", "R"), ("outcome", "0")], [("entity", flags[0]), ("outcome", "4")]]
    sorts = ["date", "-date", "_id", "-_id", "subtype", "-outcome", "_lastUpdated", "-_lastUpdated", "subtype,-date"]
    qs += [[("_sort", s)] for s in sorts] + [[("patient", CHILD), ("_sort", s)] for s in ("-date", "subtype")]
    qs += [[("_sort", "-date"), ("_count", "3"), ("_offset", o)] for o in ("0", "3", "6", "500")]
    qs += [[("patient", CHILD), ("_count", "2"), ("_offset", "2")], [("_count", "0")], [("_summary", "count")],
           [("patient", CHILD), ("_summary", "count")], [("subtype", "read"), ("_summary", "count")],
           [("_total", "none"), ("_count", "2")], [("subtype", "read"), ("_count", "2"), ("_offset", "1")]]
    qs += [[("_include", i)] for i in ("AuditEvent:patient", "AuditEvent:entity", "AuditEvent:*",
                                       "AuditEvent:entity:Flag", "AuditEvent:agent")]
    qs += [[("_include", "AuditEvent:entity:Flag"), ("_include:iterate", "Flag:patient")],
           [("patient", CHILD), ("_include", "AuditEvent:patient"), ("_count", "2")]]
    return qs


def _answer(result: SearchResult) -> tuple[Any, ...]:
    return ([(m.id, m.content, m.last_updated, m.created_by_org) for m in result.matches], result.total,
            [(i.resource_type, i.id) for i in result.included], result.includes_truncated)


async def test_the_trail_answers_every_search_as_the_resources_did(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    ctx, api = fresh
    children = await _history(api, ctx)
    async with ctx.sessionmaker() as session:
        events = [row[0] for row in (await session.execute(
            select(resource.c.content).where(resource.c.res_type == "AuditEvent").order_by(resource.c.pk))).all()]
        assert len(events) > 30 and any("security" in e["meta"] for e in events)
        battery = _battery(events, children)
        compared = 0
        for name in READERS:
            who = principal(name)
            for query in battery:
                req = parse_search("AuditEvent", query, base=BASE, default_count=ctx.settings.default_count,
                                   max_count=ctx.settings.max_count, limits=ctx.settings.search_limits)
                assert not req.unknown, query
                old = await run_search(session, req, max_includes=ctx.settings.max_includes, restrict=Restriction(who))
                new = await audit_search.search(session, req, who, base=BASE, max_includes=ctx.settings.max_includes,
                                                restrict=Restriction(who))
                assert _answer(new) == _answer(old), (name, query)
                compared += bool(old.matches)
        assert compared > 200  # most searches found something: the comparison is not of empty pages
        for e in events:  # a read of each event answers its stored resource
            assert (await audit_search.get(session, e["id"])).content == e  # type: ignore[union-attr]
        assert await audit_search.get(session, "nothing") is None


@pytest.mark.parametrize("db", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def test_the_upgrade_links_the_stored_events_and_appends_those_never_chained(
        db: str, pg_cluster: PgCluster | None) -> None:
    """The trail's reference rows are copied from the AuditEvents' index; an AuditEvent stored only as a
    resource (as the web app's sign-ins were) is appended to lane 0, so searches still find it and the
    chains verify."""
    from datetime import UTC, datetime, timedelta

    from app.security import audit_trail
    from app.security.audit import audit_for
    from app.security.audit_verify import verify
    from app.storage.audit_tables import GENESIS, audit_event, audit_event_ref, audit_row
    from app.storage.repository import Repository

    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    reader = principal("lead")
    async with fresh_context(db, pg_cluster, f"safeflag_audit_refs_{next(_DATABASES)}") as ctx:
        await upgrade(ctx.engine, "20261206_0014")
        made, position, prev = [], 0, GENESIS
        async with ctx.sessionmaker() as session, session.begin():
            repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
            for minutes, chained in ((1, True), (2, False), (3, True)):
                at = when + timedelta(minutes=minutes)
                event = audit_for(interaction="search-type", principal=reader, recorded=at, resource_type="Flag",
                                  patients=[CHILD, "Patient/kid-1"], query="Flag?category=x")
                stored = await repo.create("AuditEvent", event, org=LA, now=at)
                await repo.flush()
                if chained:  # as the trail was appended to before: no reference rows
                    position += 1
                    row = audit_row(0, position, prev, stored.id, at.replace(tzinfo=None), LA, stored.content)
                    prev = row["hash"]
                    await session.execute(insert(audit_event), [row])
                made.append(stored)
        await upgrade(ctx.engine)
        async with ctx.engine.connect() as conn:
            trail = (await conn.execute(select(audit_event.c.position, audit_event.c.event_id)
                                        .order_by(audit_event.c.position))).all()
            refs = sorted((await conn.execute(select(audit_event_ref))).all())
            report = await conn.run_sync(verify)
        assert [tuple(r) for r in trail] == [(1, made[0].id), (2, made[2].id), (3, made[1].id)]
        assert report.clean and report.rows == 3, report.findings
        assert refs == sorted((r["param"], r["ref"], r["event_id"]) for m in made
                              for r in audit_trail.linked_refs(m.content, m.id, BASE))
        assert {("patient", "Patient/kid-1"), ("entity", CHILD)} <= {(p, ref) for p, ref, _ in refs}
        async with ctx.sessionmaker() as session:
            req = parse_search("AuditEvent", [("patient", "Patient/kid-1")], base=BASE)
            found = await audit_search.search(session, req, reader, base=BASE, max_includes=10, restrict=None)
        # in the trail's order (the one appended by the upgrade last)
        assert [m.id for m in found.matches] == [made[0].id, made[2].id, made[1].id] and found.total == 3


async def test_paging_links_walk_the_trail_as_the_resources_did(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    """Through the API, a reader who may not see restricted events follows `next` links page by page and
    meets exactly the events, in the order and with the total, that the search of the resources gave."""
    ctx, api = fresh
    await _history(api, ctx)
    epr = bearer(ctx, "system", "epr", EPR, scope=READERS["epr"][3])
    # orders in which the events the walk itself writes come last, so that pages do not shift under it
    for query in ([("_sort", "date")], [("patient", CHILD)], [("subtype", "read")]):
        req = parse_search("AuditEvent", [*query, ("_count", "500")], base=BASE)
        async with ctx.sessionmaker() as session:
            old = await run_search(session, req, restrict=Restriction(principal("epr")))
        expected = [m.id for m in old.matches]
        assert expected and not any("security" in m.content["meta"] for m in old.matches)
        seen: list[str] = []
        r = await api.get("/fhir/AuditEvent", params=[*query, ("_count", "4")], headers=epr)
        while True:
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["total"] >= len(expected)  # the reader's own searches since are events too
            seen += [e["resource"]["id"] for e in page.get("entry", []) if e["search"]["mode"] == "match"]
            following = [link["url"] for link in page["link"] if link["relation"] == "next"]
            if not following:
                break
            r = await api.get(following[0].removeprefix(BASE_URL), headers=epr)
        assert [i for i in seen if i in set(expected)] == expected, query
        assert len(seen) == len(set(seen)) == page["total"]
        async with ctx.sessionmaker() as session:
            hidden = {row[0]["id"] for row in (await session.execute(select(resource.c.content).where(
                resource.c.res_type == "AuditEvent"))).all() if "security" in row[0]["meta"]}
        assert hidden and not hidden & set(seen)

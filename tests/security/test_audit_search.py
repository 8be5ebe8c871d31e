"""AuditEvent read, search, `_history`, `_revinclude` and the "records withheld" notice, all answered
from the audit trail's own table (app/security/audit_search.py), checked against a reference the test
computes itself from the history it made through the API (several organisations and roles, a
sexual-health service whose accesses are restricted, refusals, searches that showed several children):

- which events each of six readers may see, worked out here from the events (a restricted event only
  for cleared roles and the organisation it is kept as written by; a scope's `subtype=read`; a clinician
  nothing), one of them a reader who must not see the restricted sexual-health events;
- for a battery of searches (every parameter, modifiers, chains, sorts, paging, totals, `_include`), the
  answer of the generic FHIR search over the same events stored as ordinary resources in a transaction
  of the test's own that is never committed (the server itself no longer keeps them so);
- `_revinclude=AuditEvent:...` and the notice from that copy's reference index, `_history` from the
  events' times. Both databases."""

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
from app.fhir.search.dates import parse_range
from app.fhir.search.params import parse_search
from app.fhir.search.results import SearchResult
from app.main import create_app
from app.search.executor import run_search
from app.security import audit_search
from app.security.guard import Restriction, search_patients
from app.security.principal import Principal
from app.storage.audit_tables import audit_event
from app.storage.migrate import upgrade
from app.storage.repository import Repository
from app.storage.tables import idx_reference, resource
from app.vocabulary import CONFIDENTIALITY
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


Event = tuple[dict[str, Any], str | None]  # an AuditEvent and the organisation it is kept as written by


def restricted(event: dict[str, Any]) -> bool:
    return any(s.get("system") == CONFIDENTIALITY and s.get("code") in ("R", "V")
               for s in event["meta"].get("security", []))


def may_see(name: str, event: Event) -> bool:
    """Whether reader `name` may see `event`, worked out from the event alone."""
    role, _, org, _ = READERS[name]
    content, kept_by = event
    if role == "ed-clinician":  # clinicians do not read the audit trail
        return False
    if role in ("admin", "safeguarding-lead"):
        return True
    if restricted(content) and kept_by != org:
        return False
    return name != "reads-only" or any(s.get("code") == "read" for s in content["subtype"])


def hidden_by_label(name: str, event: Event) -> bool:
    """Within the reader's reach and scope, and withheld only for its restricted label."""
    role, _, org, _ = READERS[name]
    content, kept_by = event
    if role in ("ed-clinician", "admin", "safeguarding-lead") or not restricted(content) or kept_by == org:
        return False
    return name != "reads-only" or any(s.get("code") == "read" for s in content["subtype"])


async def trail(session: Any) -> list[Event]:
    """The events the history wrote, in the order they were appended."""
    rows = (await session.execute(select(audit_event.c.content, audit_event.c.created_by_org)
                                  .order_by(audit_event.c.seq))).all()
    return [(row[0], row[1]) for row in rows]


async def store_as_resources(ctx: AppContext, session: Any, events: list[Event]) -> dict[str, dict[str, set[str]]]:
    """The reference: `events` stored as ordinary resources in `session` (never committed), for the generic
    search; returns each event's `patient`, `entity` and `agent` references from their index rows."""
    repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
    for content, org in events:
        await repo.create("AuditEvent", content, res_id=content["id"], org=org, validated=True,
                          now=parse_range(content["meta"]["lastUpdated"])[0])
    await repo.flush()
    r, res = idx_reference.c, resource.c
    refs: dict[str, dict[str, set[str]]] = {content["id"]: {} for content, _ in events}
    for rid, param, ttype, tid in (await session.execute(
            select(res.res_id, r.param, r.target_type, r.target_id).join(resource, res.pk == r.resource_pk)
            .where(r.res_type == "AuditEvent", r.target_id.is_not(None)))).all():
        refs[rid].setdefault(param, set()).add(f"{ttype}/{tid}")
    return refs


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


def _parse(ctx: AppContext, rtype: str, query: list[tuple[str, str]]) -> Any:
    req = parse_search(rtype, query, base=BASE, default_count=ctx.settings.default_count,
                       max_count=ctx.settings.max_count, limits=ctx.settings.search_limits)
    assert not req.unknown, query
    return req


async def test_the_trail_answers_every_search_as_the_reference_does(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    ctx, api = fresh
    children = await _history(api, ctx)
    async with ctx.sessionmaker() as session:
        events = await trail(session)
        assert not (await session.execute(select(resource.c.pk).where(resource.c.res_type == "AuditEvent"))).all()
        contents = [e for e, _ in events]
        assert len(events) > 30 and sum(map(restricted, contents)) >= 4
        battery = _battery(contents, children)
        await store_as_resources(ctx, session, events)
        compared = 0
        for name in READERS:
            who = principal(name)
            everything = await audit_search.search(session, _parse(ctx, "AuditEvent", [("_count", "500")]), who,
                                                   base=BASE, max_includes=10, restrict=Restriction(who))
            assert [m.id for m in everything.matches] == [e["id"] for e, o in events if may_see(name, (e, o))], name
            for query in battery:
                req = _parse(ctx, "AuditEvent", query)
                ref = await run_search(session, req, max_includes=ctx.settings.max_includes, restrict=Restriction(who))
                new = await audit_search.search(session, req, who, base=BASE, max_includes=ctx.settings.max_includes,
                                                restrict=Restriction(who))
                assert _answer(new) == _answer(ref), (name, query)
                compared += bool(ref.matches)
        assert compared > 200  # most searches found something: the comparison is not of empty pages
        # the restricted events are all kept as written by the sexual-health service
        assert {name for name in READERS if any(hidden_by_label(name, e) for e in events)} == {"epr", "reads-only"}
        for e, _ in events:  # a read of each event answers it as recorded
            assert (await audit_search.get(session, e["id"])).content == e  # type: ignore[union-attr]
        assert await audit_search.get(session, "nothing") is None


async def test_revinclude_history_and_notice_follow_the_reference(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    """`_revinclude=AuditEvent:...` from searches of other types, AuditEvent `_history` and the "records
    withheld" notice of AuditEvent searches, for each reader, against the test's own reckoning."""
    ctx, api = fresh
    children = await _history(api, ctx)
    async with ctx.sessionmaker() as session:
        events = await trail(session)
        refs = await store_as_resources(ctx, session, events)
        order = {e["id"]: n for n, (e, _) in enumerate(events)}
        checked = {"revinclude": 0, "history": 0, "withheld": 0}
        for name in READERS:
            who = principal(name)
            seen = [(e, o) for e, o in events if may_see(name, (e, o))]
            for rtype, query in [("Patient", []), ("Flag", []), ("Patient", [("_id", CHILD.split("/")[1])])]:
                for param in ("*", "patient", "entity", "agent", "source"):
                    req = _parse(ctx, rtype, [*query, ("_revinclude", f"AuditEvent:{param}"), ("_count", "100")])
                    got = await run_search(session, req, max_includes=1000, restrict=Restriction(who),
                                           audit=audit_search.revincluded(session, who))
                    keys = {f"{m.resource_type}/{m.id}" for m in got.matches}
                    expected = [e["id"] for e, _ in seen if any(keys & refs[e["id"]].get(p, set())
                                for p in (("patient", "entity", "agent", "source") if param == "*" else (param,)))]
                    assert sorted((i.id for i in got.included), key=order.__getitem__) == expected, (name, rtype, param)
                    assert all(i.resource_type == "AuditEvent" for i in got.included)
                    checked["revinclude"] += bool(expected)
            newest_first = [e for e, _ in sorted(seen, key=lambda eo: (eo[0]["meta"]["lastUpdated"], order[eo[0]["id"]]),
                                                 reverse=True)]
            for offset, count in ((0, 500), (3, 4)):
                versions, total = await audit_search.history(session, who, None, since=None, at=None, limit=count,
                                                             offset=offset)
                assert total == len(seen) and [v.id for v in versions] == [e["id"] for e in
                                                                           newest_first[offset:offset + count]]
                assert all(v.version_id == 1 and v.method == "POST" and v.content == e for v, e in
                           zip(versions, newest_first[offset:], strict=False))
            if seen:
                middle = seen[len(seen) // 2][0]
                since = parse_range(middle["meta"]["lastUpdated"])[0]
                versions, total = await audit_search.history(session, who, middle["id"], since=None, at=None,
                                                             limit=10, offset=0)
                assert ([v.id for v in versions], total) == ([middle["id"]], 1)
                versions, total = await audit_search.history(session, who, None, since=since, at=None, limit=500,
                                                             offset=0)
                assert [v.id for v in versions] == [e["id"] for e in newest_first
                                                    if e["meta"]["lastUpdated"] >= middle["meta"]["lastUpdated"]]
                checked["history"] += 1
            for query in [[("patient", c)] for c in children] + [[], [("subtype", "read")], [("outcome", "4")]]:
                req = _parse(ctx, "AuditEvent", [*query, ("_count", "500")])
                shown = (await audit_search.search(session, req, who, base=BASE, max_includes=10,
                                                   restrict=Restriction(who))).matches
                about = {query[0][1]} if query and query[0][0] == "patient" else {
                    ref for m in shown for ref in refs[m.id].get("patient", set())}
                expected_notice = any(hidden_by_label(name, e) and refs[e[0]["id"]].get("patient", set()) & about
                                      for e in events)
                assert await audit_search.withholds(session, who, req, search_patients(shown)) is expected_notice, (name, query)
                checked["withheld"] += expected_notice
        assert checked["revinclude"] > 20 and checked["history"] == 5 and checked["withheld"] == 5, checked


@pytest.mark.parametrize("db", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def test_the_upgrade_links_the_stored_events_and_appends_those_never_chained(
        db: str, pg_cluster: PgCluster | None) -> None:
    """The trail's reference rows are copied from the AuditEvents' index (and its coding rows added from
    their JSON); an AuditEvent stored only as a resource (as the web app's sign-ins were) is appended to
    lane 0, so searches still find it and the chains verify."""
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
                              for r in audit_trail.search_rows(m.content, m.id, BASE))
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
            events = await trail(session)
            await store_as_resources(ctx, session, events)
            ref = await run_search(session, req, restrict=Restriction(principal("epr")))
        expected = [m.id for m in ref.matches]
        assert expected and not any("security" in m.content["meta"] for m in ref.matches)
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
            hidden = {e["id"] for e, o in await trail(session) if not may_see("epr", (e, o))}
        assert hidden and not hidden & set(seen)


async def _row_counts(ctx: AppContext) -> dict[str, int]:
    """Rows in every table of the generic resource store, and in the audit trail."""
    from sqlalchemy import func

    from app.storage.audit_tables import audit_event_ref
    from app.storage.tables import metadata

    tables = [t for t in metadata.sorted_tables if t.name in ("resource", "resource_version", "outbox_event")
              or "resource_pk" in t.c]
    async with ctx.sessionmaker() as session:
        return {t.name: int((await session.execute(select(func.count()).select_from(t))).scalar_one())
                for t in [*tables, audit_event, audit_event_ref]}


async def test_an_audited_access_writes_the_trail_only(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    """A read, a search, an AuditEvent search and a refused read each write one `audit_event` row (and its
    reference rows, and four coding rows: `type` and `subtype` by code and by system and code) and no
    resource, version, index or outbox row: the AuditEvent is not a FHIR resource."""
    ctx, api = fresh
    children = await _history(api, ctx)
    lead = bearer(ctx, "safeguarding-lead", "lead-1", "Organization/elsewhere")
    ed = bearer(ctx, "ed-clinician", "ed-1", ED)
    before = await _row_counts(ctx)
    assert before["resource"] > 0 and before["idx_reference"] > 0 and before["audit_event"] > 30
    for headers, url, status, refs in [
        (lead, f"/fhir/{children[1]}", 200, 3),  # entity and patient the child, agent the user's fhirUser
        (lead, f"/fhir/Flag?patient={children[1]}", 200, 3),  # the same for the child the search was about
        (lead, f"/fhir/AuditEvent?patient={children[1]}&_revinclude=AuditEvent:entity", 200, 5),
        (ed, "/fhir/AuditEvent", 403, 1),  # the refused clinician as agent
    ]:
        r = await api.get(url, headers=headers)
        assert r.status_code == status, r.text
        after = await _row_counts(ctx)
        grown = {name: after[name] - before[name] for name in after if after[name] != before[name]}
        assert grown == {"audit_event": 1, "audit_event_ref": refs + 4}, (url, grown)
        before = after


@pytest.mark.parametrize("db", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def test_the_upgrade_removes_audit_resources_only_when_each_is_in_the_trail(
        db: str, pg_cluster: PgCluster | None) -> None:
    """Revision 20261206_0018 removes the AuditEvents' resource, version and index rows; while one of them
    has no row in the trail it refuses, saying how many are missing, and changes nothing."""
    from datetime import UTC, datetime

    from app.security.audit import audit_for
    from app.storage.audit_tables import audit_row
    from app.storage.tables import metadata

    when = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    reader = principal("lead")
    async with fresh_context(db, pg_cluster, f"safeflag_audit_removal_{next(_DATABASES)}") as ctx:
        await upgrade(ctx.engine, "20261206_0017")
        async with ctx.sessionmaker() as session, session.begin():  # as the server stored them before
            repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
            child = await repo.create("Patient", {"resourceType": "Patient", "birthDate": "2022-01-01"}, now=when)
            made = [await repo.create("AuditEvent", audit_for(
                interaction="read", principal=reader, recorded=when, resource_type="Patient", res_id=child.id,
                resource=child.content, patients=[f"Patient/{child.id}"]), org=LA, now=when) for _ in range(3)]
            await repo.flush()
            rows = [audit_row(0, n + 1, "0" * 64 if n == 0 else "", m.id, when.replace(tzinfo=None), LA, m.content)
                    for n, m in enumerate(made[:2])]
            await session.execute(insert(audit_event), rows)
        tables = [t for t in metadata.sorted_tables if t.name in ("resource", "resource_version") or "resource_pk" in t.c]

        async def counts() -> dict[str, int]:
            from sqlalchemy import func
            async with ctx.sessionmaker() as session:
                return {t.name: int((await session.execute(select(func.count()).select_from(t))).scalar_one())
                        for t in tables}

        before = await counts()
        assert before["resource"] == 4 and before["resource_version"] == 4 and before["idx_reference"] > 6
        with pytest.raises(Exception, match=r"^1 AuditEvent\(s\) stored as resources are not in the audit trail "
                                            r"\(audit_event\); nothing was removed$"):
            await upgrade(ctx.engine)
        assert await counts() == before
        async with ctx.sessionmaker() as session, session.begin():
            await session.execute(insert(audit_event), [audit_row(0, 3, "", made[2].id, when.replace(tzinfo=None),
                                                                  LA, made[2].content)])
        await upgrade(ctx.engine)
        after = await counts()
        async with ctx.sessionmaker() as session:
            kept = (await session.execute(select(resource.c.res_type, resource.c.res_id))).all()
            childs = {t.name: len((await session.execute(select(t).where(t.c.resource_pk == child.pk))).all())
                      for t in tables if "resource_pk" in t.c}
        # what is left is the Patient's: its resource row, its version and its index rows, all of them
        assert [tuple(k) for k in kept] == [("Patient", child.id)]
        assert after == {"resource": 1, **childs} and childs["resource_version"] == 1 and childs["idx_date"] == 1
        assert {m.id for m in made} <= {e["id"] for e, _ in await _trail_of(ctx)}


async def _trail_of(ctx: AppContext) -> list[Event]:
    async with ctx.sessionmaker() as session:
        return await trail(session)


async def test_history_of_an_audit_event_through_the_api(fresh: tuple[AppContext, httpx.AsyncClient]) -> None:
    """`AuditEvent/{id}/_history` answers the event as version 1 to a reader who may see it, and to a reader
    who may not see a restricted event exactly what its read answers; `AuditEvent/_history` leaves it out."""
    ctx, api = fresh
    await _history(api, ctx)
    epr = bearer(ctx, "system", "epr", EPR, scope=READERS["epr"][3])
    async with ctx.sessionmaker() as session:
        events = await trail(session)
    shown = next(e for e, o in events if may_see("epr", (e, o)))
    hidden = next(e for e, o in events if not may_see("epr", (e, o)))
    r = await api.get(f"/fhir/AuditEvent/{shown['id']}/_history", headers=epr)
    assert r.status_code == 200, r.text
    assert [(x["resource"], x["request"], x["response"]["status"]) for x in r.json()["entry"]] == [
        (shown, {"method": "POST", "url": "AuditEvent"}, "201 Created")] and r.json()["total"] == 1
    read = await api.get(f"/fhir/AuditEvent/{hidden['id']}", headers=epr)
    r = await api.get(f"/fhir/AuditEvent/{hidden['id']}/_history", headers=epr)
    assert read.status_code in (403, 404) and (r.status_code, r.json()) == (read.status_code, read.json())
    r = await api.get("/fhir/AuditEvent/_history", params={"_count": "500"}, headers=epr)
    ids = {x["resource"]["id"] for x in r.json()["entry"]}
    assert shown["id"] in ids and hidden["id"] not in ids

"""What one request leaves behind, counted exactly: a unit of work is freed by reference counting when it
ends (no reference cycle keeps its session, repository, guard and principal for the cycle collector)."""

from __future__ import annotations

import gc
import re
import weakref
from typing import Any

import httpx
from sqlalchemy import event

from app.context import AppContext
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from tests.support.fhir_data import NHS, flag, organization, patient

ADMIN = Principal(sub="cost-admin", role="admin", scopes=ScopeSet.parse("user/*.cruds"),
                  issuer="http://127.0.0.1:8080/auth", org="Organization/cost")
PATIENT = {"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                      "value": "9990000018"}], "birthDate": "2020-01-02"}


async def test_a_unit_of_work_is_freed_without_the_cycle_collector(clean_ctx: AppContext) -> None:
    gc.collect()
    gc.disable()
    try:
        async with clean_ctx.unit_of_work(principal=ADMIN) as svc:
            created = await svc.create("Patient", PATIENT)
            assert created.stored is not None
            await svc.read("Patient", created.stored.id)
            await svc.search("Patient", [("identifier", "https://fhir.nhs.uk/Id/nhs-number|9990000018")])
            refs = [weakref.ref(o) for o in (svc, svc.session, svc.repo, svc.guard)]
        del svc, created
        assert [r() for r in refs] == [None, None, None, None]
    finally:
        gc.enable()


def _shape(sql: str) -> str:
    """A statement as its kind and the tables it names: 'SELECT resource', 'INSERT INTO idx_token', ..."""
    sql = " ".join(sql.split())
    if sql.startswith("WITH"):
        return "WITH " + " ".join(re.findall(r"INSERT INTO (\w+)", sql))
    m = re.match(r"(INSERT INTO|UPDATE|DELETE FROM) (\w+)", sql)
    if m:
        return f"{m.group(1)} {m.group(2)}"
    m = re.match(r"SELECT (\w+)\(", sql) or re.match(r"SELECT .*? FROM (\w+)", sql)
    return f"SELECT {m.group(1)}" if m else sql.split(" ")[0]


async def test_statements_per_read_search_and_create(client: httpx.AsyncClient, clean_ctx: AppContext) -> None:
    """Exactly what the database is asked to run for one read, one CP-IS search and one create of a Flag
    (as the benchmark sends them): a change here is a change in cost per request, made on purpose."""
    org = (await client.post("/fhir/Organization", json=organization())).json()["id"]
    pat = (await client.post("/fhir/Patient", json=patient(nhs="9990000018"))).json()["id"]
    body = {**flag(f"Patient/{pat}", f"Organization/{org}")}
    body["subject"] = {**body["subject"], "identifier": {"system": NHS, "value": "9990000018"}}
    fid = (await client.post("/fhir/Flag", json=body)).json()["id"]
    other = (await client.post("/fhir/Patient", json=patient(nhs="9990000026"))).json()["id"]
    second = {**body, "subject": {"reference": f"Patient/{other}", "identifier": {"system": NHS, "value": "9990000026"}}}
    cpis = f"/fhir/Flag?patient:identifier={NHS}%7C9990000018&status=active&_include=Flag:author"

    sent: list[str] = []
    traced: list[str] = []
    sqlite = clean_ctx.engine.dialect.name == "sqlite"

    def record(_conn: Any, _cur: Any, sql: str, *_a: Any) -> None:
        sent.append(_shape(sql))

    raw: Any = None
    if sqlite:  # the queued rows go straight to sqlite3 (app/storage/buffer.py): trace what it runs
        async with clean_ctx.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
        raw.sqlite.set_trace_callback(traced.append)
    event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    counts = {}
    try:
        for name, call in (("read", lambda: client.get(f"/fhir/Flag/{fid}")),
                           ("search", lambda: client.get(cpis)),
                           ("search again", lambda: client.get(cpis)),
                           ("create", lambda: client.post("/fhir/Flag", json=second))):
            sent.clear()
            traced.clear()
            response = await call()
            assert response.status_code in (200, 201), response.text
            counts[name] = (list(sent), len(traced))
    finally:
        event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
        if raw is not None:
            raw.sqlite.set_trace_callback(None)

    # the Flag(s) read, then the lane's last row in the audit trail (the AuditEvent's row and reference rows
    # are queued): no resource, version or index row of an AuditEvent
    read = ["SELECT resource", "SELECT audit_event"]
    search = ["SELECT resource", "SELECT idx_reference", *read]  # the matches, the types the authors are, the _include
    create = ["SELECT resource", "SELECT resource", "INSERT INTO resource", "SELECT audit_event"]
    if sqlite:  # BEGIN IMMEDIATE; the queued rows went straight to sqlite3: its trace counts each row (an
        # AuditEvent's reference rows and the four rows of its `type` and `subtype` codings among them)
        assert counts == {"read": (["BEGIN", *read], 14), "search": (["BEGIN", *search], 15),
                          "search again": (["BEGIN", *search], 15), "create": (["BEGIN", *create], 25)}
    else:  # every queued row in one statement before COMMIT; a create locks its duplicate check's key; the
        # connection continues its audit lane from the row it committed last (no `SELECT audit_event`);
        # a search is planned with its values (SET LOCAL plan_cache_mode, app/storage/db.py), its
        # `_include`'s look-ups (by the matches' pks, then by type and id) generically (a second SET); the
        # matches and the included come without their JSON, read after each the first time only (then kept
        # by this process: app/storage/contents.py)
        queued = "WITH audit_event audit_event_ref"
        read, search, create = ([s for s in shapes if s != "SELECT audit_event"] for shapes in (read, search, create))
        assert counts == {
            "read": ([*read, queued], 0),
            "search": (["SET", search[0], "SELECT resource", "SET", *search[1:], "SELECT resource", queued], 0),
            "search again": (["SET", search[0], "SET", *search[1:], queued], 0),
            "create": ([create[0], "SELECT pg_advisory_xact_lock", "SET", *create[1:],
                        "WITH resource_version idx_token idx_reference idx_date outbox_event audit_event "
                        "audit_event_ref"], 0),
        }

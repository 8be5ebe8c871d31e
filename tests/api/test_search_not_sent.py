"""Statements that could return nothing are not sent: a search, an include step, an AuditEvent search
and a withheld-records probe whose access conditions (or criteria) are a constant false, because the
asker may see nothing of the types they would read, are answered as empty without asking the database
(app/search/sql.py `never`). Each test checks the whole answer (entries, total, links, notices) and
exactly which statements the request sent, on both databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event

from app.context import AppContext
from tests.safeguarding.support import CHILD, LA, borough, example, flag, post, put

Auth = Any
RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


# What a search's statement is for, by its text (the first that fits)
_KINDS: list[tuple[str, Callable[[str], bool]]] = [
    # who the asker works with and what is shared with them (app/security/affiliation.py)
    ("affiliation", lambda s: " AS which," in s or "AS anon_1 FROM resource AS resource_1" in s),
    ("types named", lambda s: s.startswith("SELECT DISTINCT idx_reference.target_type")),
    ("include", lambda s: "FROM resource WHERE (resource.res_type, resource.res_id) IN (SELECT idx_reference." in s),
    ("withheld probe", lambda s: s.startswith("SELECT w.pk")),
    ("audit search", lambda s: s.startswith("SELECT audit_event.seq")),
    ("audit record", lambda s: "audit_event" in s),
    ("count", lambda s: s.startswith("SELECT count")),
    # the JSON of records this process has not read before (PostgreSQL: app/storage/contents.py)
    ("contents", lambda s: "pg_column_size(" in s),
    ("page", lambda s: s.startswith("SELECT resource.pk")),
]


def _described(sql: str) -> str:
    return next((kind for kind, fits in _KINDS if fits(sql)), sql[:40])


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[str]]:
    """The shapes of the statements sent through the engine while the block runs (searches, reads)."""
    sent: list[str] = []

    def record(_conn: Any, _cur: Any, sql: str, *_a: Any) -> None:
        if not sql.lstrip().upper().startswith(("BEGIN", "SET ", "COMMIT", "ROLLBACK")):
            sent.append(_described(" ".join(sql.split())))

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)


def entries(bundle: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["search"]["mode"], e["resource"]["resourceType"], e["resource"].get("id", ""))
            for e in bundle.get("entry", [])]


async def test_includes_of_types_the_asker_may_see_none_of_are_not_read(
        client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth) -> None:
    """A MASH practitioner may read no Practitioner and no Encounter: a referral's sender (a reference to
    any type, here a Practitioner) and its encounter are not included, and not looked for."""
    await borough(client)
    await put(client, {"resourceType": "Practitioner", "id": "gp-1", "name": [{"family": "Okafor"}]})
    encounter = await put(client, example("example-ed-attendance"))
    referral = await post(client, {
        "resourceType": "Communication", "status": "completed", "subject": {"reference": CHILD},
        "recipient": [{"reference": LA}], "sender": {"reference": "Practitioner/gp-1"},
        "encounter": {"reference": f"Encounter/{encounter['id']}"}, "sent": "2026-01-04T12:00:00Z"})
    mash = auth("mash-practitioner", org=LA)
    query = ("/fhir/Communication?recipient=" + LA + "&_include=Communication:sender"
             "&_include=Communication:encounter&_include=Communication:subject")
    with statements(clean_ctx) as sent:
        r = await client.get(query, headers=mash)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert (entries(bundle), bundle["total"]) == (
        [("match", "Communication", referral["id"]), ("include", "Patient", "example-child")], 1)
    # the page; the sender's and the subject's types (a Practitioner, which is not read; the child); the
    # child; the withheld probe. Nothing for the encounter. On PostgreSQL the JSON of the Communication,
    # read for the first time (the child's was read by an earlier request here, and is kept:
    # app/storage/contents.py).
    pg = clean_ctx.engine.dialect.name == "postgresql"
    assert [d for d in sent if d not in ("affiliation", "audit record")] == [
        "page", *(["contents"] if pg else []), "types named", "types named", "include", "withheld probe"], sent
    # the lead may read both: the same search includes them, under the same links
    r = await client.get(query, headers=auth("safeguarding-lead", org=LA))
    assert r.json()["link"] == bundle["link"]
    assert entries(r.json()) == [("match", "Communication", referral["id"]), ("include", "Practitioner", "gp-1"),
                                 ("include", "Encounter", encounter["id"]), ("include", "Patient", "example-child")]


async def test_a_search_of_a_type_the_asker_may_see_nothing_of_is_answered_empty(
        client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth) -> None:
    """A MASH practitioner sees only the DocumentReferences shared with their organisation: none here.
    A search for the child's (one restricted, one not) finds none, counts none and says nothing is
    withheld (no record of the type is within their reach), without a statement for the page, the count
    or the probe."""
    await borough(client)
    for meta in ({}, {"meta": {"security": [RESTRICTED]}}):
        await post(client, {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": CHILD},
                            **meta, "custodian": {"reference": LA},
                            "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/none"}}]})
    mash = auth("mash-practitioner", org=LA)
    for query, total in (("?patient=" + CHILD, 0), ("?patient=" + CHILD + "&_summary=count", 0),
                         ("?patient=" + CHILD + "&_count=0", 0), ("?patient=" + CHILD + "&_offset=5", 0)):
        with statements(clean_ctx) as sent:
            r = await client.get("/fhir/DocumentReference" + query, headers=mash)
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert (bundle["type"], bundle["total"], bundle.get("entry", [])) == ("searchset", total, []), query
        assert [d for d in sent if d not in ("affiliation", "audit record")] == [], (query, sent)
    r = await client.get("/fhir/DocumentReference?patient=" + CHILD, headers=auth("safeguarding-lead", org=LA))
    assert r.json()["total"] == 2


async def test_the_summary_does_not_read_the_audit_trail_for_a_reader_of_no_auditevent(
        client: httpx.AsyncClient, clean_ctx: AppContext, auth: Auth) -> None:
    """An ED clinician may read no AuditEvent: the summary's accesses section is empty without a
    statement to the audit trail (the one to it is the summary's own audit record)."""
    await borough(client)
    cp = await put(client, example("example-child-protection-plan"))
    risk = await post(client, flag("exploitation-risk", CHILD))
    assert (await client.get("/fhir/Patient/example-child")).status_code == 200  # an access to show a lead
    ed = auth("ed-clinician", org="Organization/example-ed", practitioner="Practitioner/ed-nurse",
              care_setting="310000008")
    with statements(clean_ctx) as sent:
        r = await client.get("/fhir/Patient/example-child/$safeguarding-summary",
                             headers={**ed, "X-Access-Context": "scheduled"})
    assert r.status_code == 200, r.text
    assert entries(r.json()) == [("match", "Patient", "example-child"), ("match", "Flag", cp["id"]),
                                 ("match", "Flag", risk["id"]),
                                 ("include", "Organization", "example-local-authority")]
    assert "audit search" not in sent, sent
    r = await client.get("/fhir/Patient/example-child/$safeguarding-summary", headers=auth("safeguarding-lead", org=LA))
    assert [e[1] for e in entries(r.json())].count("AuditEvent") == 6

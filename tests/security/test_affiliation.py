"""`affiliation.enrich`: the organisation's people and what is shared with a MASH, from stored data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from app.context import AppContext
from app.security.affiliation import enrich
from app.security.policy import decide
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from app.storage.repository import Repository


async def _store(ctx: AppContext, *resources: dict[str, Any]) -> None:
    async with ctx.sessionmaker() as session, session.begin():
        repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
        for res in resources:
            await repo.create(res["resourceType"], res, res_id=res["id"])
        await repo.flush()


def role(rid: str, prac: str, org: str) -> dict[str, Any]:
    return {"resourceType": "PractitionerRole", "id": rid, "practitioner": {"reference": f"Practitioner/{prac}"},
            "organization": {"reference": f"Organization/{org}"}}


def who(role_name: str, org: str, fhir_user: str | None = None) -> Principal:
    return Principal(sub="u", role=role_name, scopes=ScopeSet.parse("user/*.cruds"), issuer="t", org=org,
                     fhir_user=fhir_user, org_refs=frozenset({org}),
                     own_refs=frozenset({fhir_user}) if fhir_user else frozenset())


async def test_team_and_own_references(clean_ctx: AppContext) -> None:
    await _store(clean_ctx, role("hv-1", "p1", "zero19"), role("hv-2", "p2", "zero19"), role("ed-1", "p3", "ed"),
                 role("hv-1-bank", "p1", "bank"))
    async with clean_ctx.sessionmaker() as session:
        hv = await enrich(session, who("health-visitor", "Organization/zero19", "Practitioner/p1"))
        assert hv.org_refs == {"Organization/zero19", "PractitionerRole/hv-1", "PractitionerRole/hv-2",
                               "Practitioner/p1", "Practitioner/p2"}
        assert hv.own_refs == {"Practitioner/p1", "PractitionerRole/hv-1", "PractitionerRole/hv-1-bank"}
        by_role = await enrich(session, who("health-visitor", "Organization/zero19", "PractitionerRole/hv-2"))
        assert by_role.own_refs == {"PractitionerRole/hv-2", "Practitioner/p2"}
    # a Communication addressed to a colleague's PractitionerRole is "of" the team
    comm = {"resourceType": "Communication", "id": "c", "status": "completed",
            "recipient": [{"reference": "PractitionerRole/hv-2"}]}
    assert decide(hv, "read", "Communication", comm, created_by_org="Organization/ed").allowed
    assert decide(who("health-visitor", "Organization/zero19"), "read", "Communication", comm,
                  created_by_org="Organization/ed").status == 404


async def test_the_team_and_the_users_own_references_are_read_in_one_statement(clean_ctx: AppContext) -> None:
    """Every request enriches its principal: the organisation's roles and the user's own (by Practitioner or
    by PractitionerRole) come back from one statement, the same references as read one by one."""
    await _store(clean_ctx, role("hv-1", "p1", "zero19"), role("hv-2", "p2", "zero19"), role("hv-1-bank", "p1", "bank"))
    sent: list[str] = []

    def record(_conn: Any, _cur: Any, sql: str, *_a: Any) -> None:
        sent.append(sql)

    event.listen(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with clean_ctx.sessionmaker() as session:
            by_prac = await enrich(session, who("health-visitor", "Organization/zero19", "Practitioner/p1"))
            by_role = await enrich(session, who("health-visitor", "Organization/zero19", "PractitionerRole/hv-1-bank"))
            no_user = await enrich(session, who("health-visitor", "Organization/bank"))
    finally:
        event.remove(clean_ctx.engine.sync_engine, "before_cursor_execute", record)
    assert len([sql for sql in sent if sql.lstrip().upper().startswith("SELECT")]) == 3
    team = {"Organization/zero19", "PractitionerRole/hv-1", "PractitionerRole/hv-2", "Practitioner/p1", "Practitioner/p2"}
    assert (by_prac.org_refs, by_prac.own_refs) == (team, {"Practitioner/p1", "PractitionerRole/hv-1",
                                                           "PractitionerRole/hv-1-bank"})
    assert (by_role.org_refs, by_role.own_refs) == (team, {"PractitionerRole/hv-1-bank", "Practitioner/p1"})
    assert (no_user.org_refs, no_user.own_refs) == (
        {"Organization/bank", "PractitionerRole/hv-1-bank", "Practitioner/p1"}, frozenset())


async def test_what_is_shared_with_a_mash(clean_ctx: AppContext) -> None:
    doc = {"resourceType": "DocumentReference", "id": "ref-copy", "status": "current",
           "content": [{"attachment": {"url": "Binary/pdf-1", "contentType": "application/pdf"}}]}
    unshared = {"resourceType": "DocumentReference", "id": "private", "status": "current"}
    referral = {"resourceType": "Communication", "id": "referral", "status": "completed",
                "recipient": [{"reference": "Organization/mash"}],
                "payload": [{"contentReference": {"reference": "DocumentReference/ref-copy"}},
                            {"contentAttachment": {"url": "Binary/note-2"}}]}
    elsewhere = {"resourceType": "Communication", "id": "other", "status": "completed",
                 "recipient": [{"reference": "Organization/hv"}],
                 "payload": [{"contentReference": {"reference": "DocumentReference/private"}}]}
    # an access notification's text (it may even name the elements) shares nothing
    told = {"resourceType": "Communication", "id": "told", "status": "completed",
            "recipient": [{"reference": "Organization/mash"}],
            "payload": [{"contentString": 'Viewed: "contentReference" DocumentReference/private'}]}
    await _store(clean_ctx, doc, unshared, referral, elsewhere, told)
    async with clean_ctx.sessionmaker() as session:
        mash = await enrich(session, who("mash-practitioner", "Organization/mash"), "DocumentReference")
        assert mash.shared_refs == {"DocumentReference/ref-copy", "Binary/pdf-1", "Binary/note-2"}
        not_needed = await enrich(session, who("mash-practitioner", "Organization/mash"), "Flag")
        assert not_needed.shared_refs == frozenset()
    assert decide(mash, "read", "DocumentReference", doc, created_by_org="Organization/hv").allowed
    assert decide(mash, "read", "DocumentReference", unshared, created_by_org="Organization/hv").status == 404
    assert decide(mash, "read", "Binary", {"resourceType": "Binary", "id": "pdf-1"}).allowed

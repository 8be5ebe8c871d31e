"""Revision 20261206_0012 labels the AuditEvents stored before it that are about a restricted record (a
labelled entity, a read refused for the label) or record a sexual-health clinician's access, and keeps
them as the record's (or that service's) organisation's; both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.main import create_app
from app.security.audit import audit_for
from app.security.labels import CONFIDENTIALITY, RESTRICTED
from app.security.principal import Principal
from app.security.scopes import ScopeSet
from app.storage.migrate import upgrade
from app.storage.repository import Repository
from app.storage.tables import idx_token, resource, resource_version
from tests.conftest import BASE_URL
from tests.notify.owners import bearer
from tests.safeguarding.support import CHILD, ED, example, flag
from tests.support.fresh_db import fresh_context
from tests.support.postgres import PgCluster

SH, EPR = "Organization/sh", "Organization/epr"
WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REFUSED = "This Flag is restricted; only safeguarding leads and the organisation that wrote it may see it"


def who(role: str, org: str) -> Principal:
    return Principal(sub=f"old-{role}", role=role, scopes=ScopeSet.parse("user/*.cruds"), issuer="t", org=org)


@pytest.mark.parametrize("db", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def test_stored_audit_events_about_restricted_records_get_the_label(
    db: str, pg_cluster: PgCluster | None
) -> None:
    async with fresh_context(db, pg_cluster, "safeflag_audit_label") as ctx:
        await upgrade(ctx.engine, "20261206_0011")
        async with ctx.sessionmaker() as session, session.begin():
            repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
            child = await repo.create("Patient", example("example-child"), res_id="example-child")
            hidden = await repo.create("Flag", {**flag("exploitation-risk", CHILD, SH), "meta": {"security": [
                dict(RESTRICTED)]}}, org=SH)
            old: dict[str, dict[str, Any]] = {
                "lead read": audit_for(interaction="read", principal=who("safeguarding-lead", "Organization/x"),
                                       recorded=WHEN, resource_type="Flag", res_id=hidden.id, version_id=1,
                                       resource=hidden.content),
                "ed refused": audit_for(interaction="read", principal=who("ed-clinician", ED), recorded=WHEN,
                                        outcome="4", outcome_desc=REFUSED, resource_type="Flag", res_id=hidden.id),
                "sh read": audit_for(interaction="read", principal=who("sexual-health-clinician", SH), recorded=WHEN,
                                     resource_type="Patient", res_id=child.id, resource=child.content),
                "ed read": audit_for(interaction="read", principal=who("ed-clinician", ED), recorded=WHEN,
                                     resource_type="Patient", res_id=child.id, resource=child.content),
            }
            ids = {name: (await repo.create("AuditEvent", event)).id for name, event in old.items()}
            await repo.flush()
        await upgrade(ctx.engine, "20261206_0017")  # the revision after which AuditEvents are no longer resources
        async with ctx.sessionmaker() as session:
            rows = {r.res_id: r for r in (await session.execute(select(
                resource.c.pk, resource.c.res_id, resource.c.content, resource.c.created_by_org).where(
                resource.c.res_type == "AuditEvent"))).all()}
            versions = dict((await session.execute(select(resource_version.c.resource_pk, resource_version.c.content)))
                            .all())
            labels = set((await session.execute(select(idx_token.c.resource_pk).where(
                idx_token.c.res_type == "AuditEvent", idx_token.c.param == "_security",
                idx_token.c.system == CONFIDENTIALITY, idx_token.c.code == "R"))).scalars())
        got = {name: (rows[rid].content["meta"].get("security"), rows[rid].created_by_org) for name, rid in ids.items()}
        assert got == {"lead read": ([RESTRICTED], SH), "ed refused": ([RESTRICTED], SH),
                       "sh read": ([RESTRICTED], SH), "ed read": (None, None)}
        assert all(versions[r.pk] == r.content for r in rows.values())
        assert labels == {rows[ids[n]].pk for n in ("lead read", "ed refused", "sh read")}
        await upgrade(ctx.engine)  # to head: the AuditEvents stay in the trail only
        async with ctx.sessionmaker() as session:
            assert not (await session.execute(select(resource.c.pk).where(resource.c.res_type == "AuditEvent"))).all()
        app = create_app(ctx=ctx)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as api:
            for reader, expected in ((bearer(ctx, "system", "epr", EPR, scope="system/AuditEvent.rs"), {"ed read"}),
                                     (bearer(ctx, "system", "sh-epr", SH, scope="system/AuditEvent.rs"), set(old))):
                found = (await api.get("/fhir/AuditEvent", params={"date": "2026-12-01"}, headers=reader)).json()
                shown = {e["resource"]["id"] for e in found.get("entry", []) if e["search"]["mode"] == "match"}
                assert shown == {ids[n] for n in expected}

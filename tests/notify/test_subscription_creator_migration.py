"""Revision 20261206_0005 tags Subscriptions stored before it with their creator (from the claims their
delivery state kept), so that their creators keep managing them; both databases."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import insert, select

from app.main import create_app
from app.storage.migrate import upgrade
from app.storage.notify_tables import subscription_state
from app.storage.repository import Repository
from app.storage.tables import idx_token, resource, resource_version
from tests.conftest import BASE_URL
from tests.notify.conftest import subscription
from tests.notify.owners import HV_ORG, intruder, owner
from tests.support.fhir_data import outcome
from tests.support.fresh_db import fresh_context
from tests.support.postgres import PgCluster

CREATOR = {"system": "https://fhir.safeflag.example/CodeSystem/created-by-client", "code": "hv-epr"}


@pytest.mark.parametrize("db", ["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def test_stored_subscriptions_get_their_creator(db: str, pg_cluster: PgCluster | None) -> None:
    async with fresh_context(db, pg_cluster, "safeflag_creator_tag") as ctx:
        await upgrade(ctx.engine, "20261126_0004")
        async with ctx.sessionmaker() as session, session.begin():
            repo = Repository(session, clock=ctx.clock, ids=ctx.ids, indexer=ctx.indexer)  # type: ignore[arg-type]
            body = subscription("http://127.0.0.1/hook", secret=None)
            legacy = {"sub": "hv-epr", "role": "system", "org": HV_ORG, "scope": "system/*.cruds"}
            for sid, claims in (("legacy", legacy), ("orphan", None)):
                await repo.create("Subscription", body, res_id=sid, org=HV_ORG)
                await session.execute(insert(subscription_state).values(
                    sub_id=sid, status="off", channel_type="rest-hook", event_count=0, attempts=0, handshake_due=0,
                    owner=claims))
            await repo.flush()
        await upgrade(ctx.engine)
        async with ctx.sessionmaker() as session:
            contents = dict((await session.execute(select(resource.c.res_id, resource.c.content))).all())
            versions = (await session.execute(select(resource_version.c.content))).scalars().all()
            tags = (await session.execute(select(idx_token.c.system, idx_token.c.code).where(
                idx_token.c.param == "_tag"))).all()
        assert contents["legacy"]["meta"]["tag"] == [CREATOR] and "tag" not in contents["orphan"]["meta"]
        assert [v["meta"].get("tag") for v in versions if v["id"] == "legacy"] == [[CREATOR]]
        assert tags == [(CREATOR["system"], CREATOR["code"])]
        app = create_app(ctx=ctx)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as api:
            mine = (await api.get("/fhir/Subscription", headers=owner(ctx))).json()
            assert [e["resource"]["id"] for e in mine["entry"]] == ["legacy"]
            assert (await api.get("/fhir/Subscription/legacy/_history/1", headers=owner(ctx))).status_code == 200
            r = await api.get("/fhir/Subscription/legacy", headers=intruder(ctx))
            assert (r.status_code, r.json()) == (404, outcome("not-found", "SF-0301: Subscription/legacy is not known",
                                                              ["id"]))

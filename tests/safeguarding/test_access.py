"""Access notifications (contract section 3) on both databases, calling `record_flag_access` directly as
the read and search interactions do, with a Principal built from token claims."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from app.context import AppContext
from app.fhir.profiles import validate_against
from app.notify.topics import topics_for
from app.safeguarding.access import ACCESS_ID_SYSTEM, COMM_CATEGORY, is_scheduled, record_flag_access
from app.safeguarding.lookup import Lookup
from app.security.principal import Principal
from app.storage.notify_tables import outbox_event
from app.stored import StoredResource
from tests.conftest import FHIR
from tests.safeguarding.support import (
    CHILD,
    LA,
    MOTHER,
    ZERO19,
    by_nhs,
    example,
    flag,
    local_authority,
    organization,
)

ED = "Organization/ed"
SEXUAL_HEALTH = "Organization/sexual-health"
NOW = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)
PROFILE = "https://fhir.safeflag.example/StructureDefinition/safeguarding-communication"


def reader(**claims: Any) -> Principal:
    base = {"iss": "https://idp.example", "sub": "dr-ed", "role": "ed-clinician", "scope": "user/*.rs", "org": ED,
            "fhirUser": "Practitioner/dr-ed", "care_setting": "310000008"}
    return Principal.from_claims({k: v for k, v in {**base, **claims}.items() if v is not None}, base=FHIR)


async def world(ctx: AppContext) -> dict[str, StoredResource]:
    """The child's cp plan (the local authority's), an exploitation-risk flag authored by a sexual-health
    clinician's PractitionerRole (created by that service's token), an ended flag, and the unborn plan."""
    async with ctx.unit_of_work() as svc:
        for org in (local_authority(), organization("ed", "ED"), organization("sexual-health", "Sexual health"),
                    organization("example-zero-to-nineteen", "0-19")):
            await svc.update("Organization", org["id"], org)
        for rid in ("example-child", "example-mother"):
            await svc.update("Patient", rid, example(rid))
        await svc.update("PractitionerRole", "hv", {"resourceType": "PractitionerRole", "id": "hv",
                                                    "organization": {"reference": ZERO19}})
        repo = svc.repo
        return {
            "cp": (await svc.create("Flag", flag("child-protection-plan", CHILD))).stored,
            "risk": await repo.create("Flag", flag("exploitation-risk", CHILD, "PractitionerRole/shc"),
                                      org=SEXUAL_HEALTH),
            "ended": await repo.create("Flag", {**flag("looked-after-child", CHILD), "status": "inactive"}),
            "unborn": (await svc.create("Flag", flag("unborn-child-protection-plan", MOTHER))).stored,
            "by-hv": (await svc.create("Flag", flag("not-brought", by_nhs("9990000018"), "PractitionerRole/hv"))).stored,
            "orphan": await repo.create("Flag", flag("did-not-wait", CHILD, "Practitioner/nobody")),
        }  # type: ignore[dict-item]


async def access(ctx: AppContext, principal: Principal | None, flags: list[StoredResource], *,
                 scheduled: bool = False, now: datetime = NOW) -> int:
    async with ctx.unit_of_work() as svc:
        return await record_flag_access(svc, principal, flags, scheduled=scheduled, now=now)


async def notifications(ctx: AppContext) -> list[dict[str, Any]]:
    async with ctx.unit_of_work() as svc:
        found = await Lookup(svc.session, FHIR).search(
            "Communication", [("category", f"{COMM_CATEGORY}|access-notification"), ("_sort", "sent,identifier")])
    return [c.content for c in found]


def expected(owner: str, child: str, flags: list[StoredResource], day: str, sent: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "identifier": [{"system": ACCESS_ID_SYSTEM, "value": f"{owner}|{child}|{day}"}],
        "status": "completed",
        "category": [{"coding": [{"system": COMM_CATEGORY, "code": "access-notification",
                                  "display": "Access notification"}]}],
        "subject": {"reference": child},
        "about": [{"reference": f"Flag/{f.id}"} for f in flags],
        "sent": sent,
        "recipient": [{"reference": owner}],
        "payload": [{"contentString": text}],
        "sender": {"reference": ED},
    }


def strip(content: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in content.items() if k not in ("id", "meta")}


async def test_an_ed_read_notifies_each_owning_organisation_once_a_day(clean_ctx: AppContext) -> None:
    w = await world(clean_ctx)
    flags = [w["cp"], w["risk"], w["ended"], w["unborn"]]
    assert await access(clean_ctx, reader(), flags) == 3
    sent = "2026-01-05T10:30:00.000+00:00"
    who = f"Who: Practitioner/dr-ed of {ED}. Where: Emergency department (http://snomed.info/sct|310000008). "
    assert [strip(c) for c in await notifications(clean_ctx)] == [
        expected(LA, CHILD, [w["cp"]], "2026-01-05", sent,
                 f"Safeguarding flags owned by {LA} were viewed in unscheduled care. {who}When: {sent}. "
                 f"Which flags: child-protection-plan (Flag/{w['cp'].id})."),
        expected(LA, MOTHER, [w["unborn"]], "2026-01-05", sent,
                 f"Safeguarding flags owned by {LA} were viewed in unscheduled care. {who}When: {sent}. "
                 f"Which flags: unborn-child-protection-plan (Flag/{w['unborn'].id})."),
        expected(SEXUAL_HEALTH, CHILD, [w["risk"]], "2026-01-05", sent,
                 f"Safeguarding flags owned by {SEXUAL_HEALTH} were viewed in unscheduled care. {who}When: {sent}. "
                 f"Which flags: exploitation-risk (Flag/{w['risk'].id})."),
    ]
    # the same day, whoever reads again in unscheduled care: nothing new; the next day: again
    assert await access(clean_ctx, reader(), flags, now=NOW + timedelta(hours=13)) == 0
    assert await access(clean_ctx, reader(org="Organization/other-ed"), flags) == 0
    assert await access(clean_ctx, reader(), flags, now=NOW + timedelta(hours=14)) == 3
    stored = await notifications(clean_ctx)
    assert len(stored) == 6 and stored[3]["identifier"][0]["value"] == f"{LA}|{CHILD}|2026-01-06"
    # each validates against our profile and is delivered by the access-notification topic (outbox row)
    for content in stored:
        assert validate_against(PROFILE, content) == []
        assert [t.name for t in topics_for("Communication", "create", content)] == ["access-notification"]
    async with clean_ctx.engine.connect() as conn:
        rows = (await conn.execute(select(outbox_event.c.res_id).where(outbox_event.c.res_type == "Communication"))).all()
    assert sorted(r[0] for r in rows) == sorted(c["id"] for c in stored)


async def test_scheduled_and_other_care_settings_read_silently(clean_ctx: AppContext) -> None:
    w = await world(clean_ctx)
    flags = [w["cp"]]
    assert await access(clean_ctx, reader(), flags, scheduled=True) == 0
    for setting in ("1078501000000104", "931821000000105", "788122004", None, "bogus"):  # HV, school nurse, SH
        assert await access(clean_ctx, reader(care_setting=setting, role="health-visitor"), flags) == 0, setting
    assert await access(clean_ctx, None, flags) == 0  # the server's own reads
    assert await access(clean_ctx, reader(org=LA, care_setting="out-of-hours"), flags) == 0  # the owner itself
    assert await notifications(clean_ctx) == []
    assert await access(clean_ctx, reader(care_setting="urgent-care"), flags) == 1
    walk_in = "https://fhir.safeflag.example/CodeSystem/care-setting|walk-in-centre"
    assert await access(clean_ctx, reader(care_setting=walk_in), flags, now=NOW + timedelta(days=1)) == 1
    texts = [c["payload"][0]["contentString"] for c in await notifications(clean_ctx)]
    assert "Where: Urgent care centre (https://fhir.safeflag.example/CodeSystem/care-setting|urgent-care)" in texts[0]
    assert "Where: Walk-in centre (https://fhir.safeflag.example/CodeSystem/care-setting|walk-in-centre)" in texts[1]
    assert (is_scheduled("scheduled"), is_scheduled(" Scheduled "), is_scheduled("unscheduled"), is_scheduled(None)) \
        == (True, True, False, False)


async def test_owner_of_a_flag_authored_by_a_person(clean_ctx: AppContext) -> None:
    w = await world(clean_ctx)
    # no token org recorded: the PractitionerRole's organisation; a child named by NHS number only
    assert await access(clean_ctx, reader(fhirUser=None, sub="locum-17"), [w["by-hv"], w["orphan"]]) == 1
    [note] = await notifications(clean_ctx)
    assert (note["recipient"], note["subject"], note["about"]) == (
        [{"reference": ZERO19}], {"reference": CHILD}, [{"reference": f"Flag/{w['by-hv'].id}"}])
    assert "Who: user 'locum-17' of Organization/ed." in note["payload"][0]["contentString"]


ADVISORY_LOCKS_HELD = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")


async def test_concurrent_reads_notify_once_and_a_read_after_the_days_notice_waits_for_no_one(
    clean_ctx: AppContext
) -> None:
    w = await world(clean_ctx)
    # eight reads of the child's plan at once, each in its own transaction: one notification of the day
    assert sorted(await asyncio.gather(*(access(clean_ctx, reader(), [w["cp"]]) for _ in range(8)))) == [0] * 7 + [1]
    assert [c["identifier"][0]["value"] for c in await notifications(clean_ctx)] == [f"{LA}|{CHILD}|2026-01-05"]
    # a later read that day finds the notification without taking the day's lock (PostgreSQL), so one
    # child's reads (an ED attendance reads the child's flags) do not wait for one another's commits
    async with clean_ctx.unit_of_work() as svc:
        assert await record_flag_access(svc, reader(), [w["cp"]], scheduled=False, now=NOW) == 0
        if clean_ctx.engine.dialect.name == "postgresql":
            assert (await svc.session.execute(ADVISORY_LOCKS_HELD)).scalar() == 0

"""End-to-end scenarios that make SafeFlag emit every kind of resource it produces, collected for
validation on the HAPI sandbox (test_emitted_validation.py, issue 7).

SafeFlag runs as the ASGI app on its own SQLite database with a clock that runs in real time from a
fixed instant (tests/e2e/server.py `TEST_CLOCK`, never today's date), a notification
dispatcher driven step by step and a real HTTP receiver for its rest-hook subscriptions; the overdue
acknowledgement Tasks are escalated by calling the dispatcher's escalation timer with a time past
their due date (a real process would have to wait a working day). Every resource collected is exactly
what a client received over HTTP (or, for notifications, what the receiver got). Reference data comes
from fhir_profiles/examples (test-range NHS numbers only).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from app.config import Settings
from app.context import AppContext
from app.main import create_app
from app.notify.delivery import RetryPolicy
from app.notify.dispatcher import Dispatcher
from app.resource_rules import resource_rules
from app.safeguarding.escalation import escalate_overdue
from app.security.tokens import default_scope
from app.storage.migrate import upgrade
from tests.conftest import RunningClock
from tests.e2e.server import TEST_CLOCK
from tests.hapi.conformance import SD
from tests.hapi.emitted_data import (
    BASE_URL,
    CHILD,
    COMM,
    CONTRACT_CODES,
    CS,
    ED,
    ED_CARE_SETTING,
    FATHER_RP,
    LA,
    MASH,
    MOTHER,
    NHS,
    ZERO19,
    encounter,
    example,
    flag,
    inline_copy,
    organization,
    qa_task,
    referral_outcome,
    referral_transaction,
    status_reason,
    subscription,
)
from tests.hapi.emitted_outcomes import audit_events, bundles_and_outcomes, notifications
from tests.security.tokens_fixture import issuer_for
from tests.support.receiver import Receiver


@dataclass
class Emitted:
    """What SafeFlag sent back, by label; `profile` names the profile each one is checked against."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)

    def add(self, label: str, resource: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
        assert label not in self.resources, label
        self.resources[label] = resource
        self.profiles[label] = (
            profile or f"http://hl7.org/fhir/StructureDefinition/{resource['resourceType']}"
        )
        return resource


class Scenario:
    """One SafeFlag (ASGI app, SQLite, test clock), a dispatcher and a receiver; `run()` plays the story."""

    def __init__(self, ctx: AppContext, api: httpx.AsyncClient, receiver: Receiver) -> None:
        self.ctx, self.api, self.receiver = ctx, api, receiver
        self.dispatcher = Dispatcher(ctx, retry=RetryPolicy(base_seconds=0.05, cap_seconds=0.2))
        self.out = Emitted()

    def token(self, role: str, **claims: Any) -> dict[str, str]:
        jwt = issuer_for(self.ctx).mint(
            sub=f"hapi-{role}", role=role, scope=default_scope(role), ttl=3600, **claims
        )
        return {"Authorization": f"Bearer {jwt}"}

    async def call(self, method: str, url: str, expect: int, body: Any = None, **kw: Any) -> dict[str, Any]:
        content = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
        headers = {"Content-Type": "application/fhir+json", **kw.pop("headers", {})}
        r = await self.api.request(method, url, content=content, headers=headers, **kw)
        assert r.status_code == expect, f"{method} {url}: {r.status_code} {r.text}"
        data: dict[str, Any] = r.json() if r.content else {}
        return data

    async def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        r = await self.api.put(
            f"/fhir/{resource['resourceType']}/{resource['id']}",
            content=orjson.dumps(resource),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert r.status_code in (200, 201), r.text
        data: dict[str, Any] = r.json()
        return data

    async def post(self, resource: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return await self.call("POST", f"/fhir/{resource['resourceType']}", 201, resource, **kw)

    async def search(self, url: str, **kw: Any) -> dict[str, Any]:
        return await self.call("GET", url, 200, **kw)

    async def deliver(self, until: Callable[[], bool]) -> None:
        """Run the dispatcher (match, then deliver) until the receiver has what `until` asks for."""
        for _ in range(200):
            await self.dispatcher.run_once()
            if until():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"receiver: not delivered; got {len(self.receiver.received)} requests")

    async def run(self) -> Emitted:
        await self.reference_data()
        await self.flags()
        await self.subscriptions()
        await self.ed_attendances()
        await self.escalations_and_acknowledgement()
        await self.unrouted_notice()
        await self.access_notification()
        await self.referral_copy()
        await bundles_and_outcomes(self)
        await notifications(self)
        await audit_events(self)
        return self.out

    async def reference_data(self) -> None:
        o = self.out
        o.add(
            "Organization (local authority)",
            await self.put(
                organization(
                    "example-local-authority", "Example Borough Children's Services", "local-authority-mash"
                )
            ),
        )
        await self.put(
            organization("example-zero-to-nineteen", "Example 0-19 Service", "zero-to-nineteen-service")
        )
        await self.put(organization("ed", "Example Hospital Emergency Department", "emergency-department"))
        await self.put(organization("mash", "Example Borough MASH", "local-authority-mash"))
        await self.put(
            {"resourceType": "Practitioner", "id": "hv", "name": [{"family": "Visitor", "given": ["Sam"]}]}
        )
        await self.put(
            {"resourceType": "Practitioner", "id": "lead", "name": [{"family": "Lead", "given": ["Kim"]}]}
        )
        for rid, who, code in (("hv-1", "hv", "health-visitor"), ("lead-1", "lead", "safeguarding-lead")):
            o.add(
                f"PractitionerRole ({code})",
                await self.put(
                    {
                        "resourceType": "PractitionerRole",
                        "id": rid,
                        "active": True,
                        "practitioner": {"reference": f"Practitioner/{who}"},
                        "organization": {"reference": ZERO19},
                        "code": [{"coding": [{"system": CS + "care-team-role", "code": code}]}],
                    }
                ),
            )
        o.add(
            "Patient (child)",
            await self.put(example("Patient-example-child.json")),
            SD + "safeguarding-patient",
        )
        o.add(
            "Patient (mother)",
            await self.put(example("Patient-example-mother.json")),
            SD + "safeguarding-patient",
        )
        o.add(
            "RelatedPerson (father)",
            await self.put(example("RelatedPerson-example-father.json")),
            SD + "significant-adult-related-person",
        )
        # the father as a patient himself: his ED attendance raises a think-family notice for the child
        father = {
            "resourceType": "Patient",
            "id": "father",
            "identifier": [{"system": NHS, "value": "9990000034"}],
            "name": [{"family": "Example", "given": ["Jo"]}],
            "gender": "male",
            "birthDate": "1990-05-06",
        }
        await self.put(father)
        o.add(
            "CareTeam",
            await self.put(
                {
                    "resourceType": "CareTeam",
                    "id": "ct-child",
                    "status": "active",
                    "subject": {"reference": CHILD},
                    "participant": [
                        {
                            "role": [{"coding": [{"system": CS + "care-team-role", "code": code}]}],
                            "member": {"reference": ref},
                        }
                        for code, ref in (
                            ("health-visitor", "PractitionerRole/hv-1"),
                            ("safeguarding-lead", "Practitioner/lead"),
                        )
                    ],
                }
            ),
        )

    async def flags(self) -> None:
        for category in CONTRACT_CODES:
            subject = MOTHER if category == "unborn-child-protection-plan" else CHILD
            extra: dict[str, Any] = {}
            if category == "significant-adult":
                extra["extension"] = [
                    {"url": SD + "significant-adult", "valueReference": {"reference": FATHER_RP}}
                ]
            created = await self.post(flag(category, subject, **extra))
            self.out.add(f"Flag ({category})", created, SD + "safeguarding-flag")
        # an ended flag: status, period.end and the status-reason extension (contract section 5)
        ended = dict(self.out.resources["Flag (exploitation-risk)"])
        ended.pop("meta")
        ended |= {
            "status": "inactive",
            "period": {"start": "2026-01-01", "end": "2026-02-01"},
            "extension": [status_reason("plan-ended")],
        }
        updated = await self.call("PUT", f"/fhir/Flag/{ended['id']}", 200, ended)
        self.out.add("Flag (ended, status-reason)", updated, SD + "safeguarding-flag")

    async def subscriptions(self) -> None:
        url = self.receiver.url
        ed = await self.post(
            subscription(
                url, "ed-attendance", "full-resource", "Communication?recipient=PractitionerRole/hv-1"
            )
        )
        self.out.add("Subscription (ed-attendance, as created)", ed)
        await self.post(subscription(url, "access-notification", "id-only", f"Communication?recipient={LA}"))
        await self.post(subscription(url, "safeguarding-flag", "empty"))
        await self.deliver(lambda: len(self.receiver.of_type("handshake")) == 3)
        self.ed_subscription = ed["id"]
        self.out.add("Subscription (read, active)", await self.search(f"/fhir/Subscription/{ed['id']}"))

    async def ed_attendances(self) -> None:
        o = self.out
        child_enc = await self.post(encounter({"reference": CHILD}, reasons=("82271004",)))
        o.add("Encounter (ED attendance)", child_enc, SD + "ed-attendance-encounter")
        await self.post(
            encounter(
                {"type": "Patient", "identifier": {"system": NHS, "value": "9990000018"}},
                disposition="1066301000000103",
            )
        )
        await self.post(encounter({"reference": "Patient/father"}))
        for category in ("ed-attendance", "did-not-wait", "think-family"):
            found = await self.search(f"/fhir/Communication?category={COMM}|{category}")
            (entry,) = [e for e in found["entry"] if e["search"]["mode"] == "match"]
            comm = entry["resource"]
            o.add(f"Communication ({category})", comm, SD + "safeguarding-communication")
            tasks = await self.search(f"/fhir/Task?focus=Communication/{comm['id']}")
            (task,) = [e["resource"] for e in tasks["entry"] if e["search"]["mode"] == "match"]
            o.add(f"Task (acknowledge, {category})", task, SD + "safeguarding-task")

    async def escalations_and_acknowledgement(self) -> None:
        o = self.out
        later = TEST_CLOCK + timedelta(days=30)  # past any due time: 5 working days span 14 days at most (Christmas)
        assert await escalate_overdue(self.ctx, later) == 3
        found = await self.search(f"/fhir/Communication?category={COMM}|escalation&_sort=_id")
        escalations = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
        assert len(escalations) == 3
        o.add("Communication (escalation)", escalations[0], SD + "safeguarding-communication")
        task_id = o.resources["Task (acknowledge, ed-attendance)"]["id"]
        o.add("Task (escalated)", await self.search(f"/fhir/Task/{task_id}"), SD + "safeguarding-task")
        acked = await self.call(
            "PATCH",
            f"/fhir/Task/{task_id}",
            200,
            {"status": "completed"},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        o.add("Task (acknowledged)", acked, SD + "safeguarding-task")

    async def unrouted_notice(self) -> None:
        """An attendance naming a child by an NHS number no Patient has (and no duty team is on file):
        the notice, tagged with its unrouted reason, and its owner-less Task."""
        o = self.out
        subject = {"type": "Patient", "identifier": {"system": NHS, "value": "9990000042"}}
        enc = await self.post(encounter(subject))
        found = await self.search(f"/fhir/Communication?encounter=Encounter/{enc['id']}")
        (comm,) = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
        assert comm["meta"]["tag"] == [{"system": CS + "unrouted-reason", "code": "patient-unknown"}]
        o.add("Communication (ed-attendance, unrouted)", comm, SD + "safeguarding-communication")
        tasks = await self.search(f"/fhir/Task?focus=Communication/{comm['id']}")
        (task,) = [e["resource"] for e in tasks["entry"] if e["search"]["mode"] == "match"]
        assert "owner" not in task
        o.add("Task (acknowledge, unrouted)", task, SD + "safeguarding-task")

    async def access_notification(self) -> None:
        clinician = self.token("ed-clinician", org=ED, care_setting=ED_CARE_SETTING)
        cpis = await self.search(
            f"/fhir/Flag?patient:identifier={NHS}|9990000018&status=active&_include=Flag:author",
            headers=clinician,
        )
        self.out.add("Bundle (searchset, CP-IS check with _include)", cpis)
        # The record banner shows the active flags too; like the search, an ED read (one notification a day).
        summary = await self.search("/fhir/Patient/example-child/$safeguarding-summary", headers=clinician)
        self.out.add("Bundle ($safeguarding-summary)", summary)
        found = await self.search(f"/fhir/Communication?category={COMM}|access-notification")
        (comm,) = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
        self.out.add("Communication (access-notification)", comm, SD + "safeguarding-communication")

    async def referral_copy(self) -> None:
        o = self.out
        hv = self.token("health-visitor", org=ZERO19, fhir_user="PractitionerRole/hv-1")
        response = await self.call("POST", "/fhir", 200, referral_transaction(), headers=hv)
        o.add("Bundle (transaction-response)", response)
        bin_id, doc_id, comm_id = (
            e["response"]["location"].split("/fhir/")[1].split("/")[1] for e in response["entry"]
        )
        binary = await self.search(f"/fhir/Binary/{bin_id}", headers={"Accept": "application/fhir+json"})
        o.add("Binary (referral document)", binary)
        doc = o.add(
            "DocumentReference (referral copy)",
            await self.search(f"/fhir/DocumentReference/{doc_id}"),
            SD + "referral-copy-document-reference",
        )
        o.add(
            "Communication (mash-referral)",
            await self.search(f"/fhir/Communication/{comm_id}"),
            SD + "safeguarding-communication",
        )
        inline = await self.post(inline_copy())
        o.add("DocumentReference (inline copy)", inline, SD + "referral-copy-document-reference")
        in_error = {k: v for k, v in inline.items() if k != "meta"} | {
            "status": "entered-in-error",
            "extension": [status_reason("added-in-error")],
        }
        corrected = await self.call("PUT", f"/fhir/DocumentReference/{inline['id']}", 200, in_error)
        o.add("DocumentReference (entered-in-error)", corrected, SD + "referral-copy-document-reference")
        lead = self.token("safeguarding-lead", org=ZERO19, fhir_user="PractitionerRole/lead-1")
        o.add(
            "Task (referral-qa)", await self.post(qa_task(doc["id"]), headers=lead), SD + "safeguarding-task"
        )
        mash = self.token("mash-practitioner", org=MASH)
        outcome = await self.post(referral_outcome(comm_id), headers=mash)
        o.add("Communication (referral-outcome)", outcome, SD + "safeguarding-communication")


@asynccontextmanager
async def scenario(workdir: Path) -> AsyncIterator[Scenario]:
    settings = Settings(
        data_dir=workdir,
        database_url=f"sqlite+aiosqlite:///{workdir / 'emitted.db'}",
        base_url=BASE_URL,
        dispatcher_in_process=False,
        rate_limit_per_second=0,
        log_level="WARNING",
        _env_file=None,
    )  # type: ignore[call-arg]
    ctx = AppContext.from_settings(settings, interceptors=resource_rules(), clock=RunningClock(TEST_CLOCK))
    await upgrade(ctx.engine)
    receiver = Receiver()
    await receiver.start()
    settings.webhook_allow = f"127.0.0.1:{receiver.port}"  # the receiver's exact port
    try:
        admin = issuer_for(ctx).mint(sub="hapi-admin", role="admin", scope=default_scope("admin"), ttl=3600)
        app = create_app(ctx=ctx)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=BASE_URL,
            headers={"Authorization": f"Bearer {admin}"},
        ) as api:
            s = Scenario(ctx, api, receiver)
            try:
                yield s
            finally:
                await s.dispatcher.http.aclose()
    finally:
        await receiver.stop()
        await ctx.close()

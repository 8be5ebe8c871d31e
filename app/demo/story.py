"""The steps of `safeflag demo`, each a real HTTP exchange with the app
made with the token of the person or system who would make it in the borough:

1. reference data (admin), 2. the local authority's child protection plan (mash-practitioner),
3. the ED's CP-IS-style check by NHS number and the access notification it owes the local authority,
4. the 0-19 service's rest-hook subscription and its handshake (system), 5. an ED attendance and the
notification it sends the health visitor, timed from the POST to its arrival, 6. the health visitor
reads the notice and acknowledges the Task, 7. the ED's MASH referral copy and the lead's review.

A step raises StepFailed with what went wrong; `notes` say what each step found, for the output.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from app.clock import clock_for
from app.config import Settings
from app.demo import borough as b
from app.demo.receiver import Receiver
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from app.ports import Clock
from app.security.cli import mint_token
from app.vocabulary import COMMUNICATION_CATEGORY, FLAG_CATEGORY, TASK_CODE, CommunicationCategory, UserRole

FHIR_JSON = "application/fhir+json"
COMM = COMMUNICATION_CATEGORY + "|"
WAIT_S = 10.0  # the target is 1 s; a slower arrival is reported, a missing one fails


class StepFailed(Exception):
    pass


def _problem(r: httpx.Response) -> str:
    try:
        issues = r.json().get("issue", [])
        text = "; ".join(i.get("diagnostics") or i.get("code", "") for i in issues)
    except ValueError:
        text = r.text[:200]
    return f"HTTP {r.status_code}: {text}"


def _entries(bundle: dict[str, Any], mode: str, rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") == mode and e["resource"]["resourceType"] == rtype]


class Story:
    def __init__(self, http: httpx.AsyncClient, settings: Settings, receiver: Receiver,
                 clock: Clock | None = None) -> None:
        self.http, self.receiver, self.base = http, receiver, settings.fhir_base
        self.clock = clock or clock_for(settings)  # the server's: a test run's starts at a fixed instant
        self.today = self.clock.now().date()
        self.notes: list[str] = []
        self.latency_ms: float | None = None  # a step's own measure, instead of its wall time
        self.state: dict[str, str] = {}

        def token(sub: str, role: str, org: str | None = None, practitioner: str | None = None,
                  care_setting: str | None = None) -> str:
            return mint_token(settings, sub=sub, role=role, org=org, practitioner=practitioner,
                              care_setting=care_setting, ttl=900)

        self.admin = token("demo-admin", UserRole.ADMIN)
        self.la = token("demo-la-worker", UserRole.MASH_PRACTITIONER, b.LA)
        self.ed = token("demo-ed-nurse", UserRole.ED_CLINICIAN, b.ED, b.ED_NURSE, b.ED_CARE_SETTING)
        self.epr = token("demo-0-19-epr", "system", b.ZERO19)
        self.hv = token("demo-hv", UserRole.HEALTH_VISITOR, b.ZERO19, b.HV)
        self.lead = token("demo-lead", UserRole.SAFEGUARDING_LEAD, b.ZERO19, b.LEAD)
        self.steps: list[tuple[str, tuple[int, ...], Callable[[], Awaitable[None]]]] = [
            ("seed reference data", (), self.seed),
            ("local authority raises a child protection plan", (1,), self.raise_plan),
            ("ED CP-IS check by NHS number", (2,), self.cpis_check),
            ("0-19 service subscribes (rest-hook)", (1,), self.subscribe),
            ("ED attendance -> health visitor notified", (4,), self.attend),
            ("health visitor reads and acknowledges", (5,), self.acknowledge),
            ("MASH referral copy and QA review", (1,), self.referral),
        ]

    async def call(self, method: str, path: str, token: str, expect: tuple[int, ...] = (200,),
                   body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        hdrs = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, **(headers or {})}
        if body is not None:
            hdrs.setdefault("Content-Type", FHIR_JSON)
        r = await self.http.request(method, "/fhir" + path, headers=hdrs,
                                    content=None if body is None else orjson.dumps(body))
        if r.status_code not in expect:
            raise StepFailed(f"{method} {path.partition('?')[0]}: {_problem(r)}")
        return r.status_code, r.json() if r.content else {}

    def note(self, text: str) -> None:
        self.notes.append(text)

    # -- 1 ---------------------------------------------------------------------------------------
    async def seed(self) -> None:
        created = 0
        for res in b.reference_data(self.today):
            path = f"/{res['resourceType']}/{res['id']}"
            status, _ = await self.call("PUT", path, self.admin, (200, 201), res)
            created += status == 201
        total = len(b.reference_data(self.today))
        self.note(f"{total} resources by PUT: {created} created, {total - created} already there")
        self.note(f"{b.CHILD} (NHS {b.CHILD_NHS}, under 5) and {b.MOTHER} (NHS {b.MOTHER_NHS}); "
                  f"CareTeam: health visitor {b.HV} of {b.ZERO19}")

    # -- 2 ---------------------------------------------------------------------------------------
    async def raise_plan(self) -> None:
        cond = (f"patient={b.CHILD}&category={quote(FLAG_CATEGORY)}%7Cchild-protection-plan"
                f"&author={b.LA}&status=active")
        status, flag = await self.call("POST", "/Flag", self.la, (200, 201), b.plan_flag(self.today),
                                       {"If-None-Exist": cond})
        self.state["flag"] = flag["id"]
        how = "raised" if status == 201 else "already active (If-None-Exist returned it)"
        self.note(f"Flag/{flag['id']} child-protection-plan for {b.CHILD}, author {b.LA}: {how}")

    # -- 3 ---------------------------------------------------------------------------------------
    async def cpis_check(self) -> None:
        began = self.clock.now().replace(microsecond=0)
        query = (f"/Flag?patient:identifier={quote(NHS_NUMBER_SYSTEM, safe='')}%7C{b.CHILD_NHS}"
                 "&status=active&_include=Flag:author")
        _, found = await self.call("GET", query, self.ed)
        flags = {f["id"] for f in _entries(found, "match", "Flag")}
        if self.state["flag"] not in flags:
            plan = self.state["flag"]
            raise StepFailed(f"the plan Flag/{plan} is not among the active flags found: {sorted(flags)}")
        orgs = _entries(found, "include", "Organization")
        owner = next((o for o in orgs if f"Organization/{o['id']}" == b.LA), None)
        phones = [t.get("value") for t in (owner or {}).get("telecom", []) if t.get("system") == "phone"]
        if owner is None or phones[:2] != [b.OFFICE_HOURS["value"], b.OUT_OF_HOURS["value"]]:
            raise StepFailed(f"_include=Flag:author gave no {b.LA} with its phone numbers (got {phones})")
        self.note(f"{len(flags)} active flag(s) for NHS {b.CHILD_NHS}; owner {owner['name']}: office hours "
                  f"{phones[0]}, out of hours {phones[1]}")
        query = (f"/Communication?category={quote(COMM, safe='')}{CommunicationCategory.ACCESS_NOTIFICATION}"
                 f"&recipient={b.LA}&subject={b.CHILD}&sent=ge{self.today.isoformat()}&_sort=-sent")
        _, told = await self.call("GET", query, self.la)
        notes = _entries(told, "match", "Communication")
        if not notes:
            raise StepFailed(f"no access-notification Communication to {b.LA} after an unscheduled-care (ED) "
                             "read of the child's active flags")
        sent = datetime.fromisoformat(notes[0]["sent"])
        when = "sent by this check" if sent >= began else f"already sent today at {sent:%H:%M:%S}Z: one a day"
        self.note(f"access notification Communication/{notes[0]['id']} to {b.LA} ({when})")

    # -- 4 ---------------------------------------------------------------------------------------
    async def subscribe(self) -> None:
        rid = b.SUBSCRIPTION.partition("/")[2]
        seen = len(self.receiver.deliveries)
        await self.call("PUT", f"/Subscription/{rid}", self.epr, (200, 201),
                        b.subscription(self.receiver.url, self.receiver.secret))
        self.state["subscription"] = rid  # pointed at this run's receiver: switched off at the end
        shake = await self.receiver.wait(lambda: next(
            (d for d in self.receiver.deliveries[seen:] if d.type == "handshake"), None), WAIT_S, "handshake")
        if not shake.signed:
            raise StepFailed("the handshake's X-SafeFlag-Signature does not match the subscription's secret")
        deadline = time.perf_counter() + WAIT_S
        while (await self.call("GET", f"/Subscription/{rid}", self.epr))[1].get("status") != "active":
            if time.perf_counter() > deadline:
                raise StepFailed(f"{b.SUBSCRIPTION} is not active {WAIT_S:.0f} s after its handshake")
            await asyncio.sleep(0.02)
        self.note(f"{b.SUBSCRIPTION}: ed-attendance, recipient={b.HV}, to {self.receiver.url}; "
                  "handshake signed, status active")

    # -- 5 ---------------------------------------------------------------------------------------
    async def attend(self) -> None:
        started = time.perf_counter()
        _, enc = await self.call("POST", "/Encounter", self.ed, (201,),
                                 b.attendance(self.clock.now().isoformat(timespec="seconds")))
        _, found = await self.call("GET", f"/Communication?encounter=Encounter/{enc['id']}", self.epr)
        notices = _entries(found, "match", "Communication")
        if len(notices) != 1:
            raise StepFailed(f"Encounter/{enc['id']} gave {len(notices)} notices to the 0-19 service, not 1")
        notice = notices[0]
        focus = f"/Communication/{notice['id']}"
        delivery = await self.receiver.wait(lambda: next(
            (d for d in self.receiver.deliveries if any(f.endswith(focus) for f in d.focus)), None),
            WAIT_S, f"notification of Communication/{notice['id']}")
        self.latency_ms = (delivery.at - started) * 1000
        if not delivery.signed:
            raise StepFailed("the notification's X-SafeFlag-Signature does not match the secret")
        recipient = [r.get("reference") for r in notice.get("recipient", [])]
        if recipient != [b.HV]:
            raise StepFailed(f"the notice went to {recipient}, not the child's health visitor {b.HV}")
        self.state.update(notice=notice["id"], encounter=enc["id"])
        target = "within" if self.latency_ms < 1000 else "OVER"
        category = notice["category"][0]["coding"][0]["code"]
        self.note(f"Encounter/{enc['id']} (EMER) -> Communication/{notice['id']} {category}, "
                  f"priority {notice.get('priority')}, to {b.HV}")
        self.note(f"signed notification arrived {self.latency_ms:.0f} ms after the POST "
                  f"({target} the 1 s target)")

    # -- 6 ---------------------------------------------------------------------------------------
    async def acknowledge(self) -> None:
        notice = self.state["notice"]
        _, comm = await self.call("GET", f"/Communication/{notice}", self.hv)
        text = (comm.get("payload") or [{}])[0].get("contentString", "")
        code = f"{quote(TASK_CODE, safe='')}%7Cacknowledge"
        _, found = await self.call("GET", f"/Task?focus=Communication/{notice}&code={code}", self.hv)
        tasks = _entries(found, "match", "Task")
        if len(tasks) != 1 or tasks[0].get("status") != "requested":
            raise StepFailed(f"expected one requested acknowledge Task for Communication/{notice}, got "
                             f"{[(t['id'], t.get('status')) for t in tasks]}")
        task = tasks[0]
        patch = [{"op": "replace", "path": "/status", "value": "completed"}]
        _, done = await self.call("PATCH", f"/Task/{task['id']}", self.hv, (200,), patch,
                                  {"Content-Type": "application/json-patch+json"})
        if done.get("status") != "completed":
            raise StepFailed(f"Task/{task['id']} is {done.get('status')} after the acknowledgement")
        due = task.get("restriction", {}).get("period", {}).get("end")
        self.note(f"read Communication/{notice}: {text!r}")
        self.note(f"Task/{task['id']} acknowledge (due {due}) -> completed by {b.HV}")

    # -- 7 ---------------------------------------------------------------------------------------
    async def referral(self) -> None:
        sent = self.clock.now().isoformat(timespec="seconds")
        text = (f"Referral to Demo Borough MASH about Casey Demo (NHS {b.CHILD_NHS}), sent {sent} by the "
                "Demo General Hospital Emergency Department.\n")
        _, answer = await self.call("POST", "", self.ed, (200,), b.referral_copy(sent, text))
        # response.location may be absolute
        # (https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.response.location)
        where = [e.get("response", {}).get("location", "").split("/_history")[0].removeprefix(self.base + "/")
                 for e in answer.get("entry", [])]
        doc = next((w for w in where if w.startswith("DocumentReference/")), None)
        if answer.get("type") != "transaction-response" or doc is None or len(where) != 3:
            raise StepFailed(f"the transaction answered {answer.get('type')} with locations {where}")
        _, stored = await self.call("GET", f"/{doc}", self.ed)
        att = stored["content"][0]["attachment"]
        self.note(f"{', '.join(where)} (size {att.get('size')}, SHA-1 {att.get('hash')}) to {b.MASH}")
        _, task = await self.call("POST", "/Task", self.lead, (201,), b.qa_review(doc))
        self.note(f"Task/{task['id']} referral-qa completed: clear-and-complete, by {b.LEAD}")

    async def switch_off(self) -> None:
        """The receiver goes away with the demo: turn the subscription off so nothing retries to it."""
        body = {**b.subscription(self.receiver.url, self.receiver.secret), "status": "off"}
        await self.call("PUT", f"/Subscription/{self.state['subscription']}", self.epr, (200,), body)


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 43 characters: a subscription secret needs 32 or more

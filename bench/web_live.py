"""The live part of bench.web_pages: how soon a new notice shows in her open page, what one live update
and one attendance cost, and memory per open stream (the parts and their figures: bench/web_pages.py).
Also the measures both parts use: quantiles, the server's own request times, CPU over a span."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from app.demo import borough as b
from app.fhir.nhs_number import check_digit
from app.safeguarding.report import median, p95
from app.vocabulary import CARE_TEAM_ROLE
from bench.procs import machine_busy_seconds, tree_cpu_seconds, tree_rss_mb
from tests.e2e.server import RunningServer
from tests.support.postgres import PgCluster
from tests.web.flows import SECOND_CHILD, api, ed_token

WATCH = """
window.seen = window.seen || {};
const mark = () => { for (const el of document.querySelectorAll('[data-task]')) {
  if (!(el.dataset.task in window.seen)) window.seen[el.dataset.task] = Date.now(); } };
mark();
new MutationObserver(mark).observe(document.getElementById('notices'), {childList: true, subtree: true});
"""


def quantiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    return {"count": len(values), "p50": round(median(values) or 0, 1), "p95": round(p95(values) or 0, 1),
            "max": round(max(values), 1)}


def server_times(server: RunningServer, path: re.Pattern[str], since: int) -> list[float]:
    records = server.log_records()[since:]
    return [float(str(r["duration_ms"])) for r in records
            if r.get("msg") == "request" and path.fullmatch(str(r.get("path", ""))) and r.get("status") == 200]


def connected(driver: Any, timeout: float = 30) -> None:
    """Wait until the open page's live stream has connected; say why not (the browser's console: a
    script that failed to load or was refused) when it does not."""
    try:
        WebDriverWait(driver, timeout).until(
            lambda d: d.find_element("id", "notices").get_attribute("data-connected") == "true")
    except TimeoutException:
        console = [e["message"] for e in driver.get_log("browser")]
        raise RuntimeError(f"the page at {driver.current_url} did not connect its live stream within "
                           f"{timeout} s; browser console: {console}") from None


def her_children(server: RunningServer, count: int) -> list[str]:
    """The demo child and `count - 1` more children on the health visitor's caseload (each with its own
    0-19 care team naming her), so that attendances can be spread over children: on PostgreSQL the
    attendances of ONE child wait for one another (an ED clinician's read of the child's flags locks the
    child's access notification of the day), which is no load a server meets but caps one child's rate."""
    children = [b.CHILD]
    with api(server) as client:
        for i in range(1, count):
            first_nine = next(n for k in range(i * 10, i * 10 + 10)
                              if check_digit(n := f"99970{k:04d}") is not None)
            child = f"Patient/bench-child-{i}"
            team = {"resourceType": "CareTeam", "id": f"bench-child-{i}-0-19", "status": "active",
                    "subject": {"reference": child}, "participant": [
                        {"role": [b.coding(CARE_TEAM_ROLE, "health-visitor")], "member": {"reference": b.HV}}]}
            for resource in (b.patient(child, f"{first_nine}{check_digit(first_nine)}", f"Bench{i}", "2024-06-01",
                                       "female", managingOrganization={"reference": b.ZERO19}), team):
                r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
                assert r.status_code in (200, 201), r.text
            children.append(child)
    return children


def encounter(child: str, index: int) -> dict[str, Any]:
    """An ED attendance of `child` (its identifier unique in the run)."""
    return {"resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
            "subject": {"reference": child}, "period": {"start": "2026-01-05T09:00:00Z"},
            "serviceProvider": {"reference": "Organization/demo-ed"}, "identifier": [
                {"system": "https://fhir.safeflag.example/Id/bench-attendance", "value": f"{time.time()}-{index}"}]}


@dataclass
class Load:
    """CPU over a span: the server's processes, PostgreSQL's (when it runs one), the whole machine's."""

    server: RunningServer
    pg_pid: int | None = None
    marks: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float, float]:
        return (time.monotonic(), tree_cpu_seconds(self.server.proc.pid),
                tree_cpu_seconds(self.pg_pid) if self.pg_pid else 0.0, machine_busy_seconds())

    def start(self) -> Load:
        self.marks = self._now()
        return self

    def since_start(self, count: int) -> dict[str, Any]:
        """CPU seconds and busy fraction (of one core) over the span; server CPU per `count` (ms)."""
        now = self._now()
        wall, server, pg, machine = (b - a for a, b in zip(self.marks, now, strict=True))
        return {"server_cpu_s": round(server, 2), "server_cpu_ms_each": round(server * 1000 / max(1, count), 1),
                "postgres_cpu_ms_each": round(pg * 1000 / max(1, count), 1) if self.pg_pid else None,
                "busy_cores": {"server": round(server / wall, 2), "postgres": round(pg / wall, 2),
                               "machine": round(machine / wall, 2), "cores": os.cpu_count()}}


@dataclass
class Posted:
    """What an open-loop run of attendances did: Encounter id -> the moment (epoch seconds) its POST was
    sent, for the created ones; each POST's answer time (ms); the seconds from the first send to the last
    answer (the server kept up when that is about the run's own length)."""

    sent: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)  # Encounter id -> when its 201 came (epoch s)
    answer_ms: list[float] = field(default_factory=list)
    drained_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"created": len(self.sent), "post_answer_ms": quantiles(self.answer_ms),
                "last_answer_after_s": round(self.drained_s, 2),
                "answered_per_s": round(len(self.answer_ms) / self.drained_s, 1) if self.drained_s else None}


def post_open_loop(server: RunningServer, children: list[str], rate: float, seconds: float) -> Posted:
    """Attendances of `children` (in turn) POSTed open-loop at `rate` per second for `seconds`: each sent at its
    planned moment whatever the earlier ones' answers, all over one shared keep-alive client (asyncio:
    no thread or connection set up per POST, so the generator's own CPU stays small on a shared
    machine)."""
    headers = ed_token(server)
    posted = Posted()

    async def run() -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.fhir_base, headers=headers, limits=limits, timeout=120) as ed:
            async def one(index: int) -> None:
                started = time.time()
                r = await ed.post("/Encounter", json=encounter(children[index % len(children)], index))
                done = time.time()
                posted.answer_ms.append((done - started) * 1000)
                if r.status_code == 201:
                    posted.sent[r.json()["id"]] = started
                    posted.answered[r.json()["id"]] = done
            loop, total = asyncio.get_running_loop(), int(rate * seconds)
            begin, posts = loop.time(), []
            for i in range(total):
                await asyncio.sleep(max(0.0, begin + i / rate - loop.time()))
                posts.append(asyncio.create_task(one(i)))
            await asyncio.gather(*posts)
            posted.drained_s = loop.time() - begin
    asyncio.run(run())
    return posted


def attendance_cpu(server: RunningServer, rate: float, seconds: float, pg_pid: int | None) -> dict[str, Any]:
    """Server CPU per attendance alone: attendances of another child of hers at `rate` with no page open
    (no live stream, no refresh)."""
    time.sleep(0.5)
    load = Load(server, pg_pid).start()
    posted = post_open_loop(server, [SECOND_CHILD], rate, seconds)
    return {"rate_per_s": rate, "seconds": seconds, **posted.summary(), **load.since_start(len(posted.sent))}


def live_latency(server: RunningServer, driver: Any, children: list[str], rate: float, seconds: float,
                 pg_pid: int | None) -> dict[str, Any]:
    driver.get(server.base_url + "/app")
    connected(driver)
    driver.execute_script(WATCH)
    logged = len(server.stderr_lines())
    load = Load(server, pg_pid).start()
    posted = post_open_loop(server, children, rate, seconds)
    sent = posted.sent
    time.sleep(3.0)  # the last notices' bounded wait
    cpu = load.since_start(len(sent))
    seen: dict[str, float] = driver.execute_script("return window.seen")
    latencies, after_answer, missing, unanswered = [], [], 0, 0
    with api(server) as admin:
        for enc, started in sent.items():
            task_id = _task_of(admin, enc)
            if task_id is None:
                unanswered += 1
            elif task_id in seen:
                latencies.append(seen[task_id] - started * 1000)
                after_answer.append(seen[task_id] - posted.answered[enc] * 1000)
            else:
                missing += 1
    refreshes = server_times(server, re.compile(r"/app/notices/list"), logged)
    out: dict[str, Any] = {
        "rate_per_s": rate, "seconds": seconds, "children": len(children), "posted": int(rate * seconds),
        **posted.summary(),
        "not_seen_in_browser": missing, "task_not_found": unanswered, "latency_ms": quantiles(latencies),
        "after_post_answered_ms": quantiles(after_answer),
        "refreshes": len(refreshes), "refresh_server_ms": quantiles(refreshes), **cpu}
    return out


def _task_of(admin: httpx.Client, encounter: str) -> str | None:
    """The acknowledgement Task of the notice an attendance made (None, and the answer printed, if not found)."""
    comms = admin.get("/Communication", params={"encounter": f"Encounter/{encounter}"})
    entries = comms.json().get("entry") if comms.status_code == 200 else None
    tasks = admin.get("/Task", params={"focus": f"Communication/{entries[0]['resource']['id']}"}) if entries else None
    found = tasks.json().get("entry") if tasks is not None and tasks.status_code == 200 else None
    if not found:
        answer = tasks if tasks is not None else comms
        print(f"no Task for Encounter/{encounter}: {answer.status_code} {answer.text[:300]}")
        return None
    return str(found[0]["resource"]["id"])


def refresh_cost(server: RunningServer, cookie: str, children: list[str], requests: int,
                 pg_pid: int | None) -> dict[str, Any]:
    """What one live update costs the server: her page's position taken, then 1 (and 10) new notices of
    hers, then `requests` updates from that position one after another (each an audited search of the
    changed Tasks, as the page makes), their server time and the server's CPU per update; with the
    number of notices on her list (an update's cost should not follow it)."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.base_url, cookies={"safeflag_session": cookie}, timeout=60) as client:
        for changed in (1, 10):
            page = client.get("/app")
            found = re.search(r'data-event="([^"]*)"', page.text)
            assert page.status_code == 200 and found, page.status_code
            out["open_notices"] = len(re.findall(r'data-task="', page.text)) + changed
            post_open_loop(server, children, float(changed), 1.0)
            time.sleep(0.3)
            logged, load = len(server.stderr_lines()), Load(server, pg_pid).start()
            for _ in range(requests):
                answer = client.get("/app/notices/list", params={"since": found.group(1)})
                assert answer.status_code == 200 and len(re.findall(r'data-task="', answer.text)) == changed
            cpu = load.since_start(requests)
            time.sleep(0.2)  # the last log lines
            out[f"{changed}_changed"] = {**quantiles(server_times(server, re.compile("/app/notices/list"), logged)),
                                         "cpu_ms_per_update": cpu["server_cpu_ms_each"],
                                         "postgres_cpu_ms_per_update": cpu["postgres_cpu_ms_each"]}
    return out


def live_memory(server: RunningServer, cookie: str, connections: int) -> dict[str, Any]:
    """Server RSS growth per open event stream (see the module docstring)."""
    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=connections + 2, max_keepalive_connections=0)
        async with (httpx.AsyncClient(base_url=server.base_url, cookies={"safeflag_session": cookie}, limits=limits,
                                      timeout=httpx.Timeout(60.0, read=None)) as client,
                    contextlib.AsyncExitStack() as streams):
            async def open_stream() -> None:
                answer = await streams.enter_async_context(client.stream("GET", "/app/events"))
                assert answer.status_code == 200
                async for line in answer.aiter_lines():
                    if line.startswith("event: "):
                        return
            await open_stream()  # the first: the poller starts with it
            first = tree_rss_mb(server.proc.pid)
            for _ in range(connections):
                await open_stream()
            after = tree_rss_mb(server.proc.pid)
        return {"connections": connections, "rss_mb_with_one": round(first, 1), "rss_mb_with_all": round(after, 1),
                "kib_per_connection": round((after - first) * 1024 / connections, 1)}
    return asyncio.run(run())


def cluster_pid(cluster: PgCluster | None) -> int | None:
    """The postmaster's pid (its backends are its children), from its data directory."""
    return int((cluster.datadir / "postmaster.pid").read_text().split()[0]) if cluster else None

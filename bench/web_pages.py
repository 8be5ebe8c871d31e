"""The web pages under load: server time per page, and how soon a new notice shows in a real browser.

A real `safeflag serve` (SQLite; or PostgreSQL: `--db pg` starts a throwaway cluster, `--database-url`
names one; two worker processes there unless `--workers` says otherwise) signing in through a real
OpenID Connect provider process, and the system Chromium (the browser tests' own fixtures, tests/web).
Seeded: the demo borough and `--notices` open notices on the health visitor (ED attendances of her
child). CPU is read from /proc for the server's processes (all workers), PostgreSQL's (when the run
started it) and the whole machine, so each figure can be read per request and against the load.

1. Server time per page (`--no-pages` skips it): `--requests` sequential views of her home page (all her
   open notices), her overdue list (read from the same open notices; none is overdue yet), one notice's
   page, and the lead's desk, each with her/his session cookie; the server's own `duration_ms` from its
   request log line, p50 and p95 (target p95 <= 50 ms with 200 open notices); and the server's CPU time
   over those requests divided by their number (`cpu_ms_per_page`; no page is open in the browser
   meanwhile, so no live stream polls). The MASH page is timed last (part 6).
2. One live update's cost (`update_before`, `update_after`: at the seeded list, and after the live part
   has added its notices): her page's position, then 1 (and 10) new notices, then `--requests` updates
   from that position: server time and CPU per update, which should not grow with her list.
3. Notice visible: with her home page open, attendances are POSTed open-loop at `--rate` per second for
   `--seconds` (asyncio over one shared keep-alive client, each POST sent at its planned moment), spread
   over `--children` children on her caseload (1: all the demo child's); a MutationObserver in the page
   records when each notice's card appears; latency is that moment minus the moment its POST was sent
   (one machine, one clock), for EVERY notice, with the number never seen (target <= 1 s at 50/s);
   `after_post_answered_ms` is the same from the POST's answer (the live path alone); the POSTs' own
   answer times and how many were answered per second say whether the server kept up with the rate.
4. Attendances alone (`attendance_alone`): the same rate with no page open (no stream, no update), for
   the server's (and PostgreSQL's) CPU per attendance.
5. Memory per open live connection: `--connections` event streams opened on the health visitor's
   session (each read up to its first event, so the server holds it), the server's resident memory
   (VmRSS, all its processes) after the first one and after all; the difference divided by their
   number. An open stream costs no database work of its own (the one poller per process serves them
   all), so memory is its cost while idle.
6. The MASH page (`server_ms` again, with the pages): `--notices` access notifications addressed to the
   MASH (the first raised as the ED raises one, reading the child's plan flag in unscheduled care; the
   others copies of it with their own identifiers) and `--referrals` referral copies sent to it, timed
   as in part 1. Seeded after the live parts, whose attendances the plan flag would otherwise change.

Results: bench/results/<date>-web-pages-<db>.json, written again as each part is measured (a part that
fails leaves the parts before it, and its error under "failed"). The pinned NHS.UK frontend files are
fetched first when the checkout has none (`make web-assets`). Everything stops by itself; only 127.0.0.1.

    python -m bench.web_pages                              # SQLite, 200 notices, 50/s for 10 s, 200 streams
    python -m bench.web_pages --db pg --seconds 10         # PostgreSQL, two worker processes
    python -m bench.web_pages --no-pages --children 10     # the live part, attendances of ten of her children
    python -m bench.web_pages --notices 20 --requests 5 --rate 5 --seconds 2 --connections 20   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from app.demo import borough as b
from app.fhir.nhs_number import check_digit
from app.safeguarding.report import median, p95
from app.vocabulary import CARE_TEAM_ROLE, COMMUNICATION_CATEGORY, CommunicationCategory
from app.web import assets
from bench.procs import ROOT, machine_busy_seconds, tree_cpu_seconds, tree_rss_mb
from tests.e2e.server import TEST_CLOCK, RunningServer, start_server
from tests.support.postgres import PgCluster, start_cluster
from tests.web.browser import start_chrome
from tests.web.conftest import USERS, sign_in, web_env
from tests.web.flows import (
    MASH_USER,
    SECOND_CHILD,
    api,
    attend,
    ed_token,
    hv_token,
    referral_copy,
    seed_server,
)
from tests.web.provider import start_provider

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


def page_times(server: RunningServer, cookie: str, paths: list[str], requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.base_url, cookies={"safeflag_session": cookie}, timeout=60) as client:
        for path in paths:
            assert client.get(path).status_code == 200  # a first view (templates compiled, caches warm)
            time.sleep(0.2)
            since, cpu = len(server.stderr_lines()), tree_cpu_seconds(server.proc.pid)
            for _ in range(requests):
                assert client.get(path).status_code == 200
            cpu = tree_cpu_seconds(server.proc.pid) - cpu
            time.sleep(0.2)  # the last log lines
            out[re.sub(r"/notices/(?!overdue$)[^/]+$", "/notices/{id}", path)] = {
                **quantiles(server_times(server, re.compile(re.escape(path)), since)),
                "cpu_ms_per_page": round(cpu * 1000 / requests, 1)}
    return out


def mash_seed(server: RunningServer, notices: int, referrals: int) -> None:
    """The MASH page's records (the module docstring, part 4)."""
    with api(server) as admin:
        r = admin.post("/Flag", json={**b.plan_flag(TEST_CLOCK.date()), "author": {"reference": b.MASH}})
        assert r.status_code == 201, r.text
    with api(server, ed_token(server)) as ed:  # unscheduled care reads the plan flag: one access notification
        assert ed.get("/Flag", params={"patient": b.CHILD}).status_code == 200
    category = f"{COMMUNICATION_CATEGORY}|{CommunicationCategory.ACCESS_NOTIFICATION}"
    with api(server) as admin:
        [first] = [e["resource"] for e in admin.get("/Communication", params={"category": category}).json()["entry"]]
        for i in range(1, notices):
            copy = {k: v for k, v in first.items() if k not in ("id", "meta")}
            copy["identifier"] = [{**ident, "value": f"{ident['value']}|bench-{i}"} for ident in first["identifier"]]
            r = admin.post("/Communication", json=copy)
            assert r.status_code == 201, r.text
    hv = hv_token(server)
    for _ in range(referrals):
        referral_copy(server, hv)


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


class Results:
    """The run's results file, written again as each part is measured."""

    def __init__(self, server: RunningServer, notices: int) -> None:
        self.path = Path(ROOT) / "bench" / "results" / f"{date.today()}-web-pages-{server.database.lower()}.json"
        self.data: dict[str, Any] = {"database": server.database, "open_notices": notices}

    def add(self, part: str, value: Any) -> None:
        self.data[part] = value
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")
        print(f"{part}: {json.dumps(value)}", flush=True)


def switch_user(driver: Any, server: RunningServer, sub: str) -> str:
    """Sign `sub` in (cookies cleared first), leave the browser on a blank page; her session cookie."""
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    sign_in(driver, server, sub)
    cookie = str(driver.get_cookie("safeflag_session")["value"])
    driver.get("about:blank")  # no page open: no live stream polls while pages are timed
    return cookie


def cluster_pid(cluster: PgCluster | None) -> int | None:
    """The postmaster's pid (its backends are its children), from its data directory."""
    return int((cluster.datadir / "postmaster.pid").read_text().split()[0]) if cluster else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=200)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--referrals", type=int, default=50, help="referral copies on the MASH page")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--children", type=int, default=1,
                        help="children of hers the live part's attendances are spread over (1: all the demo child's)")
    parser.add_argument("--db", choices=("sqlite", "pg"), default="sqlite",
                        help="pg: a throwaway PostgreSQL cluster started (and removed) by the run")
    parser.add_argument("--database-url", default=None, help="an existing database instead (PostgreSQL)")
    parser.add_argument("--workers", type=int, default=None,
                        help="server processes (default: 2 on PostgreSQL, 1 on SQLite, which has one writer)")
    parser.add_argument("--pages", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the server time per page (--no-pages: the live part alone)")
    args = parser.parse_args()
    if assets.fetch():  # the pages' NHS.UK frontend files, as `make web-assets` fetches them
        print(f"NHS.UK frontend {assets.VERSION} fetched into {assets.VENDOR}")
    cluster: PgCluster | None = start_cluster() if args.db == "pg" and not args.database_url else None
    url = args.database_url
    if cluster is not None:
        cluster.psql("CREATE DATABASE bench_web")
        url = cluster.url("bench_web")
    workers = args.workers or (2 if url else 1)
    provider = start_provider()
    for sub, claims in {**USERS, "mia.mash": MASH_USER}.items():
        provider.add_user(sub, claims)
    # the per-client rate limit off: the bench's own look-ups after the live part (two searches per
    # attendance, one after another) would exceed it; the pages and attendances stay under it anyway
    server = start_server(url, args=("--workers", str(workers)) if workers > 1 else (),
                          extra_env=web_env(provider, SAFEFLAG_RATE_LIMIT_PER_SECOND="0"))
    driver = start_chrome()
    results = Results(server, args.notices)
    results.add("workers", workers)
    try:
        seed_server(server)
        ed = ed_token(server)
        task_ids = [attend(server, headers=ed) for _ in range(args.notices)]
        pages: dict[str, Any] = {}
        if args.pages:
            hv = switch_user(driver, server, "hana.visitor")
            pages = page_times(server, hv, ["/app", "/app/notices/overdue", f"/app/notices/{task_ids[-1]}"],
                               args.requests)
            results.add("server_ms", pages)
            lead = switch_user(driver, server, "sam.lead")
            pages |= page_times(server, lead, ["/app/lead"], args.requests)
            results.add("server_ms", pages)
        hv = switch_user(driver, server, "hana.visitor")
        children = her_children(server, args.children)
        pg_pid = cluster_pid(cluster)
        results.add("update_before", refresh_cost(server, hv, children, args.requests, pg_pid))
        live = live_latency(server, driver, children, args.rate, args.seconds, pg_pid)
        results.add("live", live)
        driver.get("about:blank")  # no page open: the attendances' own CPU
        results.add("attendance_alone", attendance_cpu(server, args.rate, min(args.seconds, 4.0), pg_pid))
        results.add("update_after", refresh_cost(server, hv, children, args.requests, pg_pid))
        results.add("live_memory", live_memory(server, hv, args.connections))
        results.add("rss_mb_after", round(tree_rss_mb(server.proc.pid), 1))
        if args.pages:
            mash_seed(server, args.notices, args.referrals)
            mash = switch_user(driver, server, "mia.mash")
            pages |= page_times(server, mash, ["/app/mash"], args.requests)
            results.add("server_ms", pages)
    except BaseException as exc:
        results.add("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        driver.quit()
        server.stop()
        server.cleanup()
        provider.stop()
        if cluster is not None:
            cluster.stop()
    print(f"written to {results.path}")


if __name__ == "__main__":
    main()

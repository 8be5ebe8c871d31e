"""The web pages under load: server time per page, and how soon a new notice shows in a real browser.

A real `safeflag serve` (SQLite, or PostgreSQL with `--database-url`) signing in through a real OpenID
Connect provider process, and the system Chromium (the browser tests' own fixtures, tests/web). Seeded:
the demo borough and `--notices` open notices on the health visitor (ED attendances of her child).

1. Server time per page: `--requests` sequential views of her home page (all her open notices), her
   overdue list (read from the same open notices; none is overdue yet), one notice's page, and the
   lead's desk, each with her/his session cookie; the server's own `duration_ms` from its request log
   line, p50 and p95 (target p95 <= 50 ms with 200 open notices); and the server process's CPU time over
   those requests divided by their number (`cpu_ms_per_page`, from /proc/<pid>/stat; no page is open in
   the browser meanwhile, so no live stream polls). The MASH page is timed last (part 4).
2. Notice visible: with her home page open, attendances are POSTed open-loop at `--rate` per second for
   `--seconds`; a MutationObserver in the page records when each notice's card appears; latency is that
   moment minus the moment its POST was sent (one machine, one clock), for EVERY notice, with the
   number never seen (target <= 1 s at 50/s). The page updates itself incrementally (only the notices
   changed since its position are fetched and put in place), as a health visitor's page does.
3. Memory per open live connection: `--connections` event streams opened on the health visitor's
   session (each read up to its first event, so the server holds it), the server's resident memory
   (VmRSS) after the first one and after all; the difference divided by their number. An open stream
   costs no database work of its own (the one poller per process serves them all), so memory is its
   cost while idle.
4. The MASH page (`server_ms` again): `--notices` access notifications addressed to the MASH (the first
   raised as the ED raises one, reading the child's plan flag in unscheduled care; the others copies of
   it with their own identifiers) and `--referrals` referral copies sent to it, timed as in part 1. Seeded
   after the live parts, whose attendances the plan flag would otherwise change.

Results: bench/results/<date>-web-pages-<db>.json, written again as each part is measured (a part that
fails leaves the parts before it, and its error under "failed"). The pinned NHS.UK frontend files are
fetched first when the checkout has none (`make web-assets`). Everything stops by itself; only 127.0.0.1.

    python -m bench.web_pages                              # SQLite, 200 notices, 50/s for 10 s, 200 streams
    python -m bench.web_pages --notices 20 --requests 5 --rate 5 --seconds 2 --connections 20   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from app.demo import borough as b
from app.safeguarding.report import median, p95
from app.vocabulary import COMMUNICATION_CATEGORY, CommunicationCategory
from app.web import assets
from bench.procs import ROOT
from tests.e2e.server import TEST_CLOCK, RunningServer, start_server
from tests.web.browser import start_chrome
from tests.web.conftest import USERS, sign_in, web_env
from tests.web.flows import MASH_USER, api, attend, ed_token, hv_token, referral_copy, seed_server
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
            since, cpu = len(server.stderr_lines()), server.cpu_s()
            for _ in range(requests):
                assert client.get(path).status_code == 200
            cpu = server.cpu_s() - cpu
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


def live_latency(server: RunningServer, driver: Any, rate: float, seconds: float) -> dict[str, Any]:
    driver.get(server.base_url + "/app")
    connected(driver)
    driver.execute_script(WATCH)
    sent: dict[str, float] = {}
    lock = threading.Lock()
    headers = ed_token(server)

    def post(index: int) -> None:
        started = time.time()
        with api(server, headers) as ed:
            r = ed.post("/Encounter", json={
                "resourceType": "Encounter", "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
                "subject": {"reference": "Patient/demo-child"}, "period": {"start": "2026-01-05T09:00:00Z"},
                "serviceProvider": {"reference": "Organization/demo-ed"}, "identifier": [
                    {"system": "https://fhir.safeflag.example/Id/bench-attendance", "value": f"{started}-{index}"}]})
        if r.status_code == 201:
            with lock:
                sent[r.json()["id"]] = started

    threads = []
    total = int(rate * seconds)
    begin = time.monotonic()
    for i in range(total):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=post, args=(i,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=60)
    time.sleep(3.0)  # the last notices' bounded wait
    seen: dict[str, float] = driver.execute_script("return window.seen")
    latencies, missing, unanswered = [], 0, 0
    with api(server) as admin:
        for encounter, started in sent.items():
            task_id = _task_of(admin, encounter)
            if task_id is None:
                unanswered += 1
            elif task_id in seen:
                latencies.append(seen[task_id] - started * 1000)
            else:
                missing += 1
    return {"rate_per_s": rate, "seconds": seconds, "posted": total, "created": len(sent),
            "not_seen_in_browser": missing, "task_not_found": unanswered, "latency_ms": quantiles(latencies)}


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
            first = server.rss_mb()
            for _ in range(connections):
                await open_stream()
            after = server.rss_mb()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=200)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--referrals", type=int, default=50, help="referral copies on the MASH page")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if assets.fetch():  # the pages' NHS.UK frontend files, as `make web-assets` fetches them
        print(f"NHS.UK frontend {assets.VERSION} fetched into {assets.VENDOR}")
    provider = start_provider()
    for sub, claims in {**USERS, "mia.mash": MASH_USER}.items():
        provider.add_user(sub, claims)
    # the per-client rate limit off: the bench's own look-ups after the live part (two searches per
    # attendance, one after another) would exceed it; the pages and attendances stay under it anyway
    server = start_server(args.database_url, extra_env=web_env(provider, SAFEFLAG_RATE_LIMIT_PER_SECOND="0"))
    driver = start_chrome()
    results = Results(server, args.notices)
    try:
        seed_server(server)
        ed = ed_token(server)
        task_ids = [attend(server, headers=ed) for _ in range(args.notices)]
        hv = switch_user(driver, server, "hana.visitor")
        pages = page_times(server, hv, ["/app", "/app/notices/overdue", f"/app/notices/{task_ids[-1]}"],
                           args.requests)
        results.add("server_ms", pages)
        lead = switch_user(driver, server, "sam.lead")
        pages |= page_times(server, lead, ["/app/lead"], args.requests)
        results.add("server_ms", pages)
        hv = switch_user(driver, server, "hana.visitor")
        results.add("live", live_latency(server, driver, args.rate, args.seconds))
        results.add("live_memory", live_memory(server, hv, args.connections))
        results.add("rss_mb_after", round(server.rss_mb(), 1))
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
    print(f"written to {results.path}")


if __name__ == "__main__":
    main()

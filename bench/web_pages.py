"""The web pages under load: server time per page, and how soon a new notice shows in a real browser.

A real `safeflag serve` (SQLite; or PostgreSQL: `--db pg` starts a throwaway cluster, `--database-url`
names one; two worker processes there unless `--workers` says otherwise) signing in through a real
OpenID Connect provider process, and the system Chromium (the browser tests' own fixtures, tests/web).
Seeded: the demo borough and `--notices` open notices on the health visitor (ED attendances of her
child); on PostgreSQL the tables are then ANALYZEd, as autovacuum keeps a live server's statistics.
CPU is read from /proc for the server's processes (all workers), PostgreSQL's (when the run started it)
and the whole machine, so each figure can be read per request and against the load.

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
6. The MASH page (`server_ms` again, with the pages; its first page, the newest 25 of each list):
   `--notices` access notifications addressed to the MASH (the first raised as the ED raises one, reading the child's plan flag in unscheduled care; the
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
import json
import re
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from app.demo import borough as b
from app.vocabulary import COMMUNICATION_CATEGORY, CommunicationCategory
from app.web import assets
from bench.procs import ROOT, speed_probe, tree_cpu_seconds, tree_rss_mb
from bench.web_live import (
    attendance_cpu,
    cluster_pid,
    her_children,
    live_latency,
    live_memory,
    quantiles,
    refresh_cost,
    server_times,
)
from tests.e2e.server import TEST_CLOCK, RunningServer, start_server
from tests.support.postgres import PgCluster, start_cluster
from tests.web.browser import start_chrome
from tests.web.conftest import USERS, sign_in, web_env
from tests.web.flows import (
    MASH_USER,
    api,
    attend,
    ed_token,
    hv_token,
    referral_copy,
    seed_server,
)
from tests.web.provider import start_provider


def page_times(server: RunningServer, cookie: str, paths: list[str], requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.base_url, cookies={"safeflag_session": cookie}, timeout=60) as client:
        for path in paths:
            assert client.get(path).status_code == 200  # a first view (templates compiled, caches warm)
            time.sleep(0.2)
            probes: list[float] = []
            since, cpu = len(server.stderr_lines()), tree_cpu_seconds(server.proc.pid)
            for _ in range(requests):
                assert client.get(path).status_code == 200
                probes.append(speed_probe())  # after the view, not beside it
            cpu = tree_cpu_seconds(server.proc.pid) - cpu  # the server's processes only: the probes run here
            time.sleep(0.2)  # the last log lines
            out[re.sub(r"/notices/(?!overdue$)[^/]+$", "/notices/{id}", path)] = {
                **quantiles(server_times(server, re.compile(re.escape(path)), since)),
                "cpu_ms_per_page": round(cpu * 1000 / requests, 1),
                "speed_probe_ms": quantiles(probes)}
    return out


def analyze(url: str | None) -> None:
    """Planner statistics of the seeded tables (PostgreSQL), as autovacuum keeps them on a live server.
    Without any, PostgreSQL ran a notice's summary sections (a child's 200 notices and open Tasks) as
    nested loops re-reading her reference rows once per notice, ~100 ms a section, until autovacuum
    first analysed the tables a minute after the seed: inside the pages' measurements (bench/run.py)."""
    if url is None:
        return  # SQLite: plans fixed by the SQL, no statistics needed

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
        await engine.dispose()

    asyncio.run(run())


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
        analyze(url)
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
            analyze(url)
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

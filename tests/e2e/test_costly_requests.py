"""Costly requests against a real `safeflag serve`: other clients are still answered while attackers
fire the costliest searches and Bundles the bounds allow, and a client that gives up on a costly search
stops its PostgreSQL statement (the backend does not run on for minutes).

No absolute timing: the other client's reads must all answer 200, each within the statement timeout
(PostgreSQL: the longest any one statement may hold a connection) or within three of the attackers'
own largest allowed Bundles (SQLite's writer), and the attackers must still be at work when the other
client is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import _pg_url
from tests.e2e.server import RunningServer, start_server
from tests.support.fhir_data import patient

TIMEOUT_S = 5.0  # the servers' statement timeout here: no read may wait longer than one statement
ATTACKERS = 24  # more than the PostgreSQL pool (16): before the bounds, about 24 such requests held it all
NHS = ("9990000018", "9990000026", "9990000034", "9990000042")


def _start(db: str, request: pytest.FixtureRequest, dbname: str, **env: str) -> RunningServer:
    url = _pg_url(request.getfixturevalue("pg_cluster"), dbname) if db == "pg" else None
    return start_server(url, args=("--no-dispatcher",),
                        extra_env={"SAFEFLAG_STATEMENT_TIMEOUT_SECONDS": str(TIMEOUT_S),
                                   "SAFEFLAG_RATE_LIMIT_PER_SECOND": "0", "SAFEFLAG_LOG_LEVEL": "WARNING", **env})


@pytest.fixture(scope="module", params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    srv = _start(request.param, request, "e2e_costly")
    try:
        with httpx.Client(base_url=srv.fhir_base, headers=srv.headers, timeout=30) as http:
            for i, nhs in enumerate(NHS):
                assert http.post("/Patient", json=patient(nhs, family=f"Costly{i}")).status_code == 201
        yield srv
    finally:
        srv.stop()
        srv.cleanup()


def costliest_searches() -> list[str]:
    """The worst shapes within the default bounds (10 criteria, 100 values; bench/search_bounds.py)."""
    return [
        "Patient?" + urlencode([("name", f"a{i}") for i in range(10)]),
        "Patient?" + urlencode([("name:contains", ",".join(f"a{i}{j}" for j in range(10))) for i in range(10)]),
        "Flag?" + urlencode([("subject.name", f"a{i}") for i in range(10)]),
        "Patient?" + urlencode([("identifier:not", f"x|{i}") for i in range(10)]),
    ]


def refused_searches() -> list[str]:
    """What the bounds refuse (400), each of which held a PostgreSQL backend for minutes before them."""
    return ["Patient?" + urlencode([("name", "a")] * 100), "Patient?" + urlencode([("name", ",".join(["a"] * 1000))]),
            "Flag?" + urlencode([("subject." * 8 + "name", "a")])]


class Attack:
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.allowed_bundle_s: list[float] = []  # how long each largest allowed Bundle took
        self.reads: list[tuple[int, float]] = []  # the other client's (status, seconds)
        self.longest_s = 0.0  # the attackers' longest search


async def _attack(http: httpx.AsyncClient, urls: list[str], stop: asyncio.Event, attack: Attack) -> None:
    i = 0
    while not stop.is_set():
        start = time.perf_counter()
        attack.statuses.append((await http.get(urls[i % len(urls)])).status_code)
        attack.longest_s = max(attack.longest_s, time.perf_counter() - start)
        i += 1


async def _reads_under_attack(server: RunningServer, attack_urls: list[str], *, post: bool = False,
                              attackers_n: int = ATTACKERS) -> Attack:
    # the attackers: a fresh connection per request (a pooled one idle past the server's keep-alive could
    # be closed under it, a client-side race that says nothing about the server)
    limits = httpx.Limits(max_connections=attackers_n + 3, max_keepalive_connections=0)
    attack = Attack()
    async with (httpx.AsyncClient(base_url=server.fhir_base, headers=server.headers, timeout=60, limits=limits) as bad,
                httpx.AsyncClient(base_url=server.fhir_base, headers=server.headers, timeout=60) as http):
        pid = (await http.get(f"/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS[0]}")).json()
        pid = pid["entry"][0]["resource"]["id"]
        stop = asyncio.Event()
        if post:
            async def send_bundles(size: int) -> None:
                while not stop.is_set():
                    start = time.perf_counter()
                    attack.statuses.append((await bad.post(server.fhir_base, json=transaction(size))).status_code)
                    if size == 100:
                        attack.allowed_bundle_s.append(time.perf_counter() - start)
            attackers = [asyncio.create_task(send_bundles(size)) for size in (100, 100, 5000)]
        else:
            n = len(attack_urls)
            attackers = [asyncio.create_task(_attack(bad, attack_urls[i % n:] + attack_urls[:i % n], stop, attack))
                         for i in range(attackers_n)]
        await asyncio.sleep(0.5)  # the attack is under way
        for _ in range(20):
            for url in (f"/Patient/{pid}",
                        f"/Flag?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS[1]}&status=active"):
                start = time.perf_counter()
                status = (await http.get(url)).status_code
                attack.reads.append((status, time.perf_counter() - start))
        still_attacking = not any(t.done() for t in attackers)
        stop.set()
        await asyncio.gather(*attackers)
    assert still_attacking
    return attack


async def test_other_clients_are_answered_during_the_costliest_searches(server: RunningServer) -> None:
    """PostgreSQL: more attackers than pooled connections; each read within the statement timeout, so no
    read waited for an attacker's statement to run out. SQLite serves one request at a time on its one
    connection, so every attacker delays everyone by a whole search: two attackers there, and each read
    within what the attackers' own searches took in the same run (a busy machine slows both alike)."""
    pg = server.database == "PostgreSQL"
    attack = await _reads_under_attack(server, costliest_searches() + refused_searches(),
                                       attackers_n=ATTACKERS if pg else 2)
    assert set(attack.statuses) == {200, 400}
    bound = TIMEOUT_S if pg else 3 * attack.longest_s + 1.0
    assert [(status, seconds <= bound) for status, seconds in attack.reads] == [(200, True)] * 40


def transaction(size: int) -> dict[str, object]:
    entries = [{"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}}
               for _ in range(size)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def test_other_clients_are_answered_during_the_largest_allowed_bundles(server: RunningServer) -> None:
    """The largest allowed transaction holds SQLite's writer briefly; a 5,000-entry one (6 s) is refused.
    A read waits at most for the two allowed Bundles ahead of it: measured against the Bundles' own
    time in the same run, so that a busy machine slows both alike."""
    attack = await _reads_under_attack(server, [], post=True)
    assert set(attack.statuses) == {200, 413}
    bound = 3 * max(attack.allowed_bundle_s) + 1.0
    assert [(status, seconds <= bound) for status, seconds in attack.reads] == [(200, True)] * 40


@pytest.mark.pg
async def test_a_client_that_gives_up_stops_its_postgresql_statement(request: pytest.FixtureRequest) -> None:
    """The search is held deterministically: the test locks the string index table, so the server's
    statement waits on the lock (a running statement, as pg_stat_activity shows it) however fast the
    machine plans; once the client gives up, the server must cancel it while the lock is still held."""
    srv = _start("pg", request, "e2e_gives_up", SAFEFLAG_STATEMENT_TIMEOUT_SECONDS="600", SAFEFLAG_LOG_LEVEL="INFO")
    engine = create_async_engine(srv.env["SAFEFLAG_DATABASE_URL"])
    # the server's statements waiting on the test's lock
    watch = text("SELECT count(*) FROM pg_stat_activity WHERE datname = 'e2e_gives_up' AND state = 'active' "
                 "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    try:
        # `conn` polls in autocommit: within one transaction PostgreSQL answers pg_stat_activity from one
        # snapshot, so a statement seen running would look as if it never stopped
        async with engine.connect() as holder, engine.connect() as polling:
            conn = await polling.execution_options(isolation_level="AUTOCOMMIT")
            await holder.execute(text("LOCK TABLE idx_string IN ACCESS EXCLUSIVE MODE"))  # until rollback
            async with httpx.AsyncClient(base_url=srv.fhir_base, headers=srv.headers) as http:
                search = asyncio.ensure_future(http.get("/Patient?name=a", timeout=10.0))
                seen = 0
                while not search.done() and seen == 0:  # the server's statement waits on the lock
                    seen = (await conn.execute(watch)).scalar_one()
                    await asyncio.sleep(0.05)
                try:
                    answer: httpx.Response | None = await search
                except httpx.ReadTimeout:  # the client gives up and closes its connection
                    answer = None
                assert answer is None, (answer.status_code, answer.text[:300])
            assert seen == 1
            running = []
            for _ in range(300):  # up to 30 s on a busy machine; a cancelled lock wait ends at once
                running.append((await conn.execute(watch)).scalar_one())
                if running[-1] == 0:
                    break
                await asyncio.sleep(0.1)
            assert running[-1] == 0, running
            await holder.rollback()
        srv.stop()
        records = srv.log_records()
        gone = [(r["level"], r["path"], r["interaction"]) for r in records if r.get("status") == 499]
        assert gone == [("INFO", "/fhir/Patient", "search_type")], records[-5:]
    finally:
        await engine.dispose()
        srv.stop()
        srv.cleanup()

"""Every write answered 2xx survives a crash of the server process: a real `safeflag serve` killed with
SIGKILL at a random moment of a burst of Flag creates and ED attendances from concurrent clients, then
started again on the same database, 12 times on SQLite and 8 on PostgreSQL (20 kills).

After each restart, for every write that was answered 201 before the kill: the resource reads back,
its create AuditEvent is there, and for every attendance its notice reaches the real subscriber
(at-least-once: a notice may come twice with the same event number, none may be missing); and the
event numbers the subscriber has seen are gap-free. Writes whose answer the kill cut off may or may
not be there: nobody was told they were.

SIGKILL ends the process, not the machine: what reached the operating system survives it even without
fsync. A power loss or an OS crash cannot be simulated here; against those, SQLite's commits are
synced to disk before they are answered (`synchronous=FULL`, the default), and PostgreSQL's are its
own WAL's. The random kill points come from a seeded RNG: the seed is printed, and
`SAFEFLAG_CRASH_SEED=<seed>` replays a run's choices.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.e2e.crash import CHILD_NHS, database, encounters_notified, hook_port, server, setup_attendances
from tests.e2e.server import RunningServer
from tests.notify.ed_data import NHS, by_nhs, encounter, flag, organization
from tests.support.receiver import Receiver

__all__ = ["database", "hook_port", "server"]  # fixtures

pytestmark = pytest.mark.e2e

ROUNDS = {"SQLite": 12, "PostgreSQL": 8}
CLIENTS = 4
WRITES_PER_CLIENT = 30  # at most, per round: the kill usually comes first
CHILDREN, AUTHORS = 50, 10
CATEGORIES = ("child-protection-plan", "looked-after-child", "fgm")
DELIVERY_TIMEOUT_S = 30.0  # generous bound on a shared 2-core machine; delivery is expected in well under 1 s


def test_range_nhs_numbers(count: int, start: int = 100) -> list[str]:
    """Valid NHS numbers of the 999 test range (Modulus 11), from prefix 999<start:06d>."""
    out = []
    for k in itertools.count(start):
        prefix = f"999{k:06d}"
        check = (11 - sum(int(d) * w for d, w in zip(prefix, range(10, 1, -1), strict=True)) % 11) % 11
        if check != 10:
            out.append(prefix + str(check))
        if len(out) == count:
            return out
    raise AssertionError("unreachable")


test_range_nhs_numbers.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class Acked:
    """Writes answered 201, by resource type: what must be there after the crash."""

    ids: dict[str, list[str]] = field(default_factory=lambda: {"Flag": [], "Encounter": []})
    cut_off: int = 0  # requests the kill cut off (their fate unknown)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __len__(self) -> int:
        return sum(map(len, self.ids.values()))

    async def reach(self, n: int, burst: asyncio.Task[None]) -> None:
        """Until `n` writes were answered 201 (or the burst is over)."""
        while len(self) < n and not burst.done():
            self.changed.clear()
            await asyncio.wait([asyncio.ensure_future(self.changed.wait()), burst],
                               return_when=asyncio.FIRST_COMPLETED)


async def seed_flag_data(api: httpx.AsyncClient) -> None:
    """Children and author organisations, so that every Flag of the burst is a new (category, child, author)."""
    gate = asyncio.Semaphore(8)

    async def put(rtype: str, rid: str, body: dict[str, object]) -> None:
        async with gate:
            resp = await api.put(f"/fhir/{rtype}/{rid}", json={**body, "id": rid})
            assert resp.status_code == 201, resp.text

    children = [put("Patient", f"c{i}", {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}],
                                         "birthDate": "2022-03-04"})
                for i, nhs in enumerate(test_range_nhs_numbers(CHILDREN))]
    authors = [put("Organization", f"a{i}", organization(f"Children's Services {i}")) for i in range(AUTHORS)]
    await asyncio.gather(*children, *authors)


def flag_bodies() -> Iterator[dict[str, object]]:
    for author, child, category in itertools.product(range(AUTHORS), range(CHILDREN), CATEGORIES):
        yield flag(f"Patient/c{child}", category, f"Organization/a{author}")


async def burst(api: httpx.AsyncClient, rng: random.Random, flags: Iterator[dict[str, object]], acked: Acked) -> None:
    """CLIENTS concurrent clients, each posting Flags and attendances one after another until the
    server is gone (or WRITES_PER_CLIENT each)."""

    async def client(crng: random.Random) -> None:
        for _ in range(WRITES_PER_CLIENT):
            body = next(flags) if crng.random() < 0.5 else encounter(by_nhs(CHILD_NHS), "Organization/ed")
            rtype = str(body["resourceType"])
            try:
                resp = await api.post(f"/fhir/{rtype}", json=body, headers={"Prefer": "return=minimal"})
            except httpx.TransportError:
                acked.cut_off += 1
                return
            assert resp.status_code == 201, resp.text  # before the kill, every write is valid and accepted
            acked.ids[rtype].append(resp.headers["location"].split(f"/{rtype}/")[1].split("/")[0])
            acked.changed.set()

    await asyncio.gather(*(client(random.Random(rng.random())) for _ in range(CLIENTS)))


async def found(api: httpx.AsyncClient, path: str, param: str, values: list[str], **extra: str) -> list[dict]:
    """Every resource of a search over `values` of `param`, 20 values a request."""
    out: list[dict] = []
    for i in range(0, len(values), 20):
        resp = await api.get(path, params={param: ",".join(values[i:i + 20]), "_count": "500", **extra})
        assert resp.status_code == 200, resp.text
        bundle = resp.json()
        assert "next" not in {link["relation"] for link in bundle.get("link", [])}
        out += [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") != "include"]
    return out


async def check_round(api: httpx.AsyncClient, receiver: Receiver, acked: Acked) -> None:
    for rtype, ids in acked.ids.items():
        read_back = {r["id"] for r in await found(api, f"/fhir/{rtype}", "_id", ids)}
        assert read_back == set(ids), f"{rtype}: answered 201 but gone after the crash: {set(ids) - read_back}"
        events = await found(api, "/fhir/AuditEvent", "entity", [f"{rtype}/{i}" for i in ids], action="C")
        refs = [e.get("what", {}).get("reference", "").split("/") for ev in events for e in ev.get("entity", [])]
        audited = {ref[1] for ref in refs if len(ref) >= 2 and ref[0] == rtype}  # "Flag/<id>/_history/1"
        assert audited >= set(ids), f"{rtype}: no create AuditEvent for {set(ids) - audited}"
    attended = set(acked.ids["Encounter"])
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while not attended <= set(encounters_notified(receiver)):
        assert time.monotonic() < deadline, f"notices never delivered: {attended - set(encounters_notified(receiver))}"
        await asyncio.sleep(0.05)


async def test_sigkill_during_writes_loses_no_acknowledged_write(server: RunningServer, hook_port: int) -> None:
    seed = int(os.environ.get("SAFEFLAG_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"{server.database}: SAFEFLAG_CRASH_SEED={seed}")
    rng = random.Random(seed)
    flags = flag_bodies()
    total = Acked()
    async with Receiver(port=hook_port) as receiver, httpx.AsyncClient(base_url=server.base_url, headers=server.headers,
                                                         timeout=30) as api:
        await setup_attendances(api, receiver)
        await seed_flag_data(api)
        for n in range(ROUNDS[server.database]):
            acked = Acked()
            # the kill point: after a random number of answered writes, plus a random fraction of a write
            kill_at, jitter = rng.randrange(1, CLIENTS * WRITES_PER_CLIENT // 2), rng.uniform(0.0, 0.03)
            writes = asyncio.create_task(burst(api, rng, flags, acked))
            await acked.reach(kill_at, writes)
            await asyncio.sleep(jitter)
            await asyncio.to_thread(server.kill9)
            await writes
            print(f"round {n + 1}: SIGKILL after {kill_at} answers + {jitter * 1000:.0f} ms: "
                  f"{len(acked.ids['Flag'])} Flags and {len(acked.ids['Encounter'])} attendances answered 201, "
                  f"{acked.cut_off} cut off")
            await asyncio.to_thread(server.restart)
            await check_round(api, receiver, acked)
            for rtype, ids in acked.ids.items():
                total.ids[rtype] += ids
        # across all rounds: every event number up to the last one arrived (no gap), every notice of an
        # acknowledged attendance among them
        numbers = set(receiver.events())
        assert numbers == set(range(1, max(numbers) + 1))
        assert set(total.ids["Encounter"]) <= set(encounters_notified(receiver))
    assert sum(map(len, total.ids.values())) > 0

"""The heap keeper (app/heap.py): a slow full collection makes a freeze due; a freeze collects the cyclic
garbage first and freezes what survives; freezes are paced; the server runs it for as long as it serves.

Real collections of this process's own heap: `slow_ms=0` makes every full collection slow, a huge
`slow_ms` none. Each test leaves the collector as it found it (nothing frozen)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from app.config import Settings
from app.heap import Freeze, HeapKeeper
from app.main import create_app
from tests.conftest import BASE_URL


class Node:
    """An object that can sit in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def collector_as_found() -> Iterator[None]:
    assert gc.get_freeze_count() == 0
    callbacks = list(gc.callbacks)
    yield
    gc.unfreeze()
    gc.callbacks[:] = callbacks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cycle() -> weakref.ref[Node]:
    """A reference cycle nothing else holds: garbage only the cyclic collector frees."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def frozen(obj: object) -> bool:
    """Whether `obj` (tracked by the collector) sits in the permanent generation: not in any other."""
    assert gc.is_tracked(obj)
    return not any(o is obj for o in gc.get_objects())


def test_a_slow_full_collection_makes_a_freeze_due_and_a_fast_one_or_a_young_one_does_not() -> None:
    slow, fast = HeapKeeper(slow_ms=0), HeapKeeper(slow_ms=1e9)
    slow.install()
    fast.install()
    gc.collect(0)
    gc.collect(1)
    assert (slow.due, fast.due) == (False, False)  # young collections are not timed
    gc.collect()
    assert (slow.due, fast.due) == (True, False)
    slow.uninstall()
    fast.uninstall()
    assert slow.observe not in gc.callbacks and fast.observe not in gc.callbacks


def test_a_freeze_collects_the_cyclic_garbage_then_freezes_what_lives() -> None:
    told: list[Freeze] = []
    keeper = HeapKeeper(slow_ms=0, on_freeze=told.append)
    gc.disable()  # no automatic collection frees the cycle before the freeze does
    try:
        garbage, alive = cycle(), [Node()]
        assert keeper.tend() is None  # not due: nothing happens
        assert garbage() is not None and gc.get_freeze_count() == 0
        keeper.observe("start", {"generation": 2})
        keeper.observe("stop", {"generation": 2, "collected": 0})
        done = keeper.tend()
    finally:
        gc.enable()
    assert done is not None and told == [done]
    assert garbage() is None  # freed by the freeze's own full collection, not frozen
    assert frozen(alive) and done.frozen == gc.get_freeze_count() > 0 and done.ms >= 0
    assert keeper.due is False
    keeper.uninstall()  # what it froze goes back to the collector
    assert gc.get_freeze_count() == 0 and not frozen(alive)


def test_freezes_are_paced_by_the_interval() -> None:
    clock = Clock()
    keeper = HeapKeeper(slow_ms=0, interval_s=10, monotonic=clock)
    keeper.install()
    gc.collect()
    assert keeper.tend() is not None
    gc.collect()
    assert keeper.due
    clock.now += 9.9
    assert keeper.tend() is None and keeper.due  # still due, too soon after the last
    clock.now += 0.1
    assert keeper.tend() is not None and not keeper.due
    keeper.uninstall()


async def test_the_keepers_task_watches_until_stopped_and_freezes_when_due() -> None:
    told: list[Freeze] = []
    keeper = HeapKeeper(slow_ms=0, on_freeze=told.append)
    stop = asyncio.Event()
    task = asyncio.create_task(keeper.run(stop, poll_s=0.01))
    await asyncio.sleep(0)
    assert keeper.observe in gc.callbacks
    gc.collect()
    for _ in range(500):
        if told:
            break
        await asyncio.sleep(0.01)
    assert len(told) == 1 and gc.get_freeze_count() > 0
    stop.set()
    await task
    assert keeper.observe not in gc.callbacks and gc.get_freeze_count() == 0


@pytest.mark.parametrize("on", [True, False])
async def test_the_server_runs_the_keeper_while_it_serves_and_counts_its_freezes(tmp_path: Path, on: bool) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'heap.db'}",
                        base_url=BASE_URL, dispatcher_in_process=False, gc_freeze=on,
                        _env_file=None)  # type: ignore[call-arg]
    app = create_app(settings)
    before = list(gc.callbacks)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0)  # the keeper's task has started
        keepers = [cb.__self__ for cb in gc.callbacks if isinstance(getattr(cb, "__self__", None), HeapKeeper)]
        assert len(keepers) == (1 if on else 0)
        if on:
            keepers[0].slow_ms = 0
            gc.collect()
            for _ in range(300):  # the task looks once a second
                if app.state.metrics.registry.get_sample_value("safeflag_heap_freezes_total") == 1:
                    break
                await asyncio.sleep(0.01)
            scrape = generate_latest(app.state.metrics.registry).decode()  # what /metrics serves among the rest
            assert "safeflag_heap_freezes_total 1.0" in scrape.splitlines()
    assert gc.callbacks == before and gc.get_freeze_count() == 0

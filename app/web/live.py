"""Live updates for the pages: a server-sent event stream (`GET /app/events`,
https://html.spec.whatwg.org/multipage/server-sent-events.html) that tells an open page "something
about notices changed, event N"; the page then fetches its list again, which is an ordinary audited
search as the signed-in user. The stream itself carries no record content, only event numbers, so
it needs no access decision of its own and cannot disclose anything.

Event numbers are the transactional outbox's row ids (one row per committed change, written in the
change's own transaction and never deleted), restricted to the types a notice list shows (Task,
Communication). One poller per process reads the newest such id every `POLL_SECONDS` (an index-only
`max`), so a commit made by any process against the same database (`--workers N`, a separate
dispatcher, another API node) reaches every open page. An EventSource reconnects by itself after a
lost connection or a server restart and sends `Last-Event-ID`: when the outbox has moved past it the
stream answers at once with the newest number, and the page catches up by fetching its list, so no
notice is missed however long it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.storage.notify_tables import outbox_event

log = logging.getLogger("safeflag.web")

POLL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
RETRY_MS = 500  # how soon a browser reconnects after a lost connection
TYPES = ("Task", "Communication")


_NEWEST = select(func.max(outbox_event.c.id)).where(outbox_event.c.res_type.in_(TYPES))


async def newest_event(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(_NEWEST)).scalar() or 0)


async def newest_event_in(session: AsyncSession) -> int:
    """The newest number as a page's own transaction sees it (SQLite has one connection to share)."""
    return int((await session.execute(_NEWEST)).scalar() or 0)


@dataclass
class LiveFeed:
    """The newest event number, shared by every open stream of this process; polls only while one is open."""

    engine: AsyncEngine
    poll_seconds: float = POLL_SECONDS
    newest: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _listeners: int = 0
    _task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        while True:
            try:
                number = await newest_event(self.engine)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the feed
                log.warning("live feed: %s", exc)
                number = self.newest
            if number != self.newest:
                self.newest = number
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(self.poll_seconds)

    async def wait_past(self, number: int, timeout: float) -> int:
        """The newest number once it differs from `number`, or `number` after `timeout` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.newest != number), timeout)
        return self.newest

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[LiveFeed]:
        if self._listeners == 0 or self._task is None:
            self.newest = await newest_event(self.engine)
            self._task = asyncio.create_task(self._poll())
        self._listeners += 1
        try:
            yield self
        finally:
            self._listeners -= 1
            if self._listeners == 0 and self._task is not None:
                self._task.cancel()
                self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def event(number: int, name: str) -> str:
    return f"id: {number}\nevent: {name}\ndata: {number}\n\n"


def last_event_id(raw: str | None) -> int | None:
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


async def stream(feed: LiveFeed, last: int | None, disconnected: asyncio.Event | None = None,
                 keepalive: float = KEEPALIVE_SECONDS) -> AsyncGenerator[str, None]:
    """`ready` with the current number on a fresh connection; `changed` at once on a reconnection that
    missed events, then one `changed` per new number; a comment line as keep-alive."""
    async with feed.listening():
        yield f"retry: {RETRY_MS}\n\n"
        current = feed.newest
        yield event(current, "changed" if last is not None and last != current else "ready")
        while disconnected is None or not disconnected.is_set():
            number = await feed.wait_past(current, keepalive)
            if number == current:
                yield ": keep-alive\n\n"
                continue
            current = number
            yield event(current, "changed")

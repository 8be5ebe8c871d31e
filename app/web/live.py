"""Live updates for the pages: a server-sent event stream (`GET /app/events`,
https://html.spec.whatwg.org/multipage/server-sent-events.html) that tells an open page "something on
your list may have changed"; the page then fetches what changed since its position (an ordinary, audited
search as the signed-in user). The stream carries no record content.

Per reader. A stream tells its reader only of changes to records she could read through `/fhir`: each
committed Task or Communication version is put to the app's access policy (the one the API's interactions
ask, `AppContext.policy`) as a read of that version by her (enriched as her pages are), and only one she
may read wakes her stream. A change anywhere else (another
organisation's notices, a sexual-health service's restricted records) sends her nothing and moves
nothing she can see: the event ids she receives are sealed positions (positions.py), which differ at
every use and reveal no count. Her stream's timing follows her own records only.

One poller per process (`LiveFeed`) reads the transactional outbox (one row per committed change,
written in the change's own transaction, never deleted) every `POLL_SECONDS`: the rows after its
cursor with the version's content, in one statement, whoever listens; it then decides for each open
stream in memory. So an open connection costs no database work of its own, and a commit made by any
process on the same database (`--workers N`, a separate dispatcher, another node) reaches every page.
On PostgreSQL an outbox id can become visible after a higher one (ids are taken before COMMIT); an id
skipped that way is looked for again for `GAP_SECONDS`, and positions handed out stay below it.

Reconnection. An EventSource reconnects by itself after a lost connection or a server restart, sending
`Last-Event-ID`; a stream opened with a position (that header, or `?since=` from the page) answers
`changed` at once whatever happened, so the page catches up by fetching what changed since its own
position, and nothing is missed however long it was away: in pages of as many changes as one search
may name, each answer saying whether more follow (pages.py). (Answering "nothing happened" instead would
tell the reader whether anyone at all wrote meanwhile.)

Shutdown. A stream never ends by itself, so the server's graceful stop would wait for it; the first
SIGTERM/SIGINT that uvicorn receives also closes the feed, which ends every stream at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.security.guard import Policy
from app.security.principal import Principal
from app.storage.notify_tables import outbox_event
from app.storage.tables import resource, resource_version
from app.web.positions import TOKEN_LENGTH, Positions

log = logging.getLogger("safeflag.web")

POLL_SECONDS = 0.2
KEEPALIVE_SECONDS = 15.0
RETRY_MS = 500  # how soon a browser reconnects after a lost connection
TYPES = ("Task", "Communication")
BATCH = 2000  # outbox rows per poll at most (the rest on the next one)
GAP_SECONDS = 5.0  # how long an outbox id skipped by a later one is looked for

_o, _r, _v = outbox_event.c, resource.c, resource_version.c
_CHANGES = select(_o.id, _o.res_type, _o.res_id, _v.content, _r.created_by_org).select_from(
    outbox_event
    .outerjoin(resource, and_(_o.res_type.in_(TYPES), _r.res_type == _o.res_type, _r.res_id == _o.res_id))
    .outerjoin(resource_version, and_(_v.resource_pk == _r.pk, _v.version_id == _o.version_id)))
_NEWEST = select(func.max(_o.id))


async def newest_in(session: AsyncSession) -> int:
    """The newest outbox id as a page's own transaction sees it."""
    return int((await session.execute(_NEWEST)).scalar() or 0)


async def tasks_changed_since(session: AsyncSession, position: int, limit: int,
                              readable: Callable[[Change], bool]) -> tuple[list[str], int | None]:
    """The Tasks changed (committed) after `position` that the reader may read (`readable`, the policy's
    decision on each version, as her stream's), at most `limit` of their changes, oldest first: their ids,
    and when more changes of hers follow, the outbox id of the last one covered (the page then asks again
    from there). A change she may not read is passed over before anything is counted, so neither the ids
    nor whether more follow depends on records she may not read (another organisation's volume)."""
    taken: list[str] = []
    last, after = position, position
    while True:
        stmt = _CHANGES.where(_o.id > after, _o.res_type == "Task").order_by(_o.id).limit(BATCH)
        rows = (await session.execute(stmt)).all()
        for row in rows:
            if not readable(Change(row.id, row.res_type, row.res_id, row.content, row.created_by_org)):
                continue
            if len(taken) == limit:
                return list(dict.fromkeys(taken)), last
            taken.append(row.res_id)
            last = row.id
        if len(rows) < BATCH:
            return list(dict.fromkeys(taken)), None
        after = rows[-1].id


@dataclass(frozen=True)
class Change:
    """One committed version of a Task or Communication, as the policy needs to judge it."""

    number: int
    res_type: str
    res_id: str
    content: dict[str, Any] | None
    created_by_org: str | None


def concerns(policy: Policy, principal: Principal, change: Change) -> bool:
    """May `principal` read this version through /fhir? The app's policy decides, as for her read of it."""
    return change.content is not None and policy(
        principal, "read", change.res_type, change.content, created_by_org=change.created_by_org).allowed


@dataclass(eq=False)
class Reader:
    """One open stream: whose it is, and whether something of hers changed since it last looked."""

    principal: Principal
    woken: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class LiveFeed:
    """The process's one outbox poller, fanning out to the open streams; polls only while one is open.
    `policy`: the app's access policy (`AppContext.policy`), which decides whom a change concerns."""

    engine: AsyncEngine
    positions: Positions
    policy: Policy
    poll_seconds: float = POLL_SECONDS
    cursor: int = 0  # every outbox id up to here has been read (or is in `gaps`)
    closed: bool = False
    readers: set[Reader] = field(default_factory=set)
    gaps: dict[int, float] = field(default_factory=dict)  # skipped id -> when first skipped (monotonic)
    _task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def safe_position(self) -> int:
        """A position no later change can land before: the cursor, or just below the oldest gap."""
        return min(self.cursor, min(self.gaps) - 1) if self.gaps else self.cursor

    def token(self) -> str:
        return self.positions.seal(self.safe_position())

    async def read(self) -> list[Change]:
        """The outbox rows after the cursor (and those still missing below it), cursor and gaps moved on."""
        after = _o.id > self.cursor
        stmt = _CHANGES.where(or_(after, _o.id.in_(sorted(self.gaps))) if self.gaps else after)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(_o.id).limit(BATCH))).all()
        now = time.monotonic()
        expected = self.cursor + 1
        for row in rows:
            self.gaps.pop(row.id, None)
            if row.id >= expected:
                self.gaps.update(dict.fromkeys(range(expected, row.id), now))
                expected = row.id + 1
        self.cursor = max(self.cursor, expected - 1)
        for number, since in list(self.gaps.items()):
            if now - since > GAP_SECONDS:
                del self.gaps[number]
        return [Change(row.id, row.res_type, row.res_id, row.content, row.created_by_org) for row in rows
                if row.res_type in TYPES]

    def tell(self, changes: list[Change]) -> None:
        """Wake the streams whose readers may read one of `changes`."""
        for reader in self.readers:
            if not reader.woken.is_set() and any(concerns(self.policy, reader.principal, c) for c in changes):
                reader.woken.set()

    async def _poll(self) -> None:
        while not self.closed:
            try:
                changes = await self.read()
                if changes:
                    self.tell(changes)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the feed
                log.warning("live feed: %s", exc)
            await asyncio.sleep(self.poll_seconds)

    @contextlib.asynccontextmanager
    async def reading(self, principal: Principal) -> AsyncIterator[Reader]:
        """An open stream's membership of the feed; the first one starts the poller, the last stops it."""
        if self._task is None:
            async with self.engine.connect() as conn:
                self.cursor = int((await conn.execute(_NEWEST)).scalar() or 0)
            self.gaps.clear()
            self._task = asyncio.create_task(self._poll(), name="safeflag-web-live")
        reader = Reader(principal)
        self.readers.add(reader)
        try:
            yield reader
        finally:
            self.readers.discard(reader)
            if not self.readers and self._task is not None:
                self._task.cancel()
                self._task = None

    def close(self) -> None:
        """End every stream now (the server is stopping)."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for reader in self.readers:
            reader.woken.set()

    def end_streams_on_exit(self) -> None:
        """Chain onto uvicorn's SIGTERM/SIGINT handlers (set while it serves): the stop it begins closes
        the feed first, so that the graceful shutdown does not wait for streams that never end."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not type(getattr(previous, "__self__", None)).__module__.startswith("uvicorn"):
                continue

            def chained(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(self.close)
                previous(signum, frame)
            signal.signal(sig, chained)


def event(token: str, name: str) -> str:
    return f"id: {token}\nevent: {name}\ndata: {name}\n\n"


def given_position(raw: str | None) -> str | None:
    """A position the browser sent (Last-Event-ID or `since`), if it looks like one; not opened here."""
    if raw is None or len(raw) != TOKEN_LENGTH or not raw.isascii():
        return None
    return raw


async def stream(feed: LiveFeed, principal: Principal, since: str | None,
                 keepalive: float = KEEPALIVE_SECONDS) -> AsyncGenerator[str, None]:
    """`ready` on a fresh connection, `changed` at once on one that gave a position (the page catches up
    from its own); then `changed` whenever a change `principal` may read is committed; a comment line as
    keep-alive. Ends when the feed closes."""
    if feed.closed:
        return
    async with feed.reading(principal) as reader:
        yield f"retry: {RETRY_MS}\n\n"
        yield event(feed.token(), "changed" if since is not None else "ready")
        while not feed.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.woken.wait(), keepalive)
            if feed.closed:
                return
            if reader.woken.is_set():
                reader.woken.clear()
                yield event(feed.token(), "changed")
            else:
                yield ": keep-alive\n\n"

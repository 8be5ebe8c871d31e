"""The worker, composed in one place: the dispatcher (app/notify/dispatcher.py) and the timers it runs
besides delivery, for `safeflag dispatcher` and for the dispatcher `safeflag serve` runs in-process.

Notifications and safeguarding are independent of each other: this is where the one meets the other,
by plain calls (the escalation of overdue acknowledgement Tasks, app/safeguarding/escalation.py, is a
timer of the dispatcher because it is added here).

Layer: an entry point, under app/main.py (which runs the dispatcher in-process) and app/cli.py; it builds an
`AppContext` (app/context.py) and hands the dispatcher and the timers only the `UnitOfWork` port (app/ports.py).
"""

from __future__ import annotations

from app.config import Settings
from app.context import AppContext
from app.heap import HeapKeeper
from app.notify.channels.websocket import WebSocketRegistry
from app.notify.dispatcher import Dispatcher
from app.ports import UnitOfWork
from app.resource_rules import resource_rules
from app.safeguarding.escalation import escalate_overdue


def make_dispatcher(ctx: UnitOfWork, *, ws: WebSocketRegistry | None = None, **kw: object) -> Dispatcher:
    """The dispatcher with its timers: escalation of overdue acknowledgement Tasks."""
    return Dispatcher(ctx, ws=ws, timers=[escalate_overdue], **kw)  # type: ignore[arg-type]


async def run_standalone(settings: Settings) -> None:
    """`safeflag dispatcher`: deliver until SIGTERM/SIGINT, then finish the round and exit."""
    import asyncio
    import signal

    from app.observability import configure_logging

    configure_logging(settings.log_level)
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    keeper = asyncio.create_task(HeapKeeper().run(stop)) if settings.gc_freeze else None  # app/heap.py
    try:
        await make_dispatcher(ctx).run(stop)
    finally:
        stop.set()
        if keeper is not None:
            await keeper
        await ctx.close()

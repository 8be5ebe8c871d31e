"""Building a dispatcher with the timers the safeguarding rules register (composition root for delivery)."""

from __future__ import annotations

from app.config import Settings
from app.context import AppContext
from app.notify.channels.websocket import WebSocketRegistry
from app.notify.dispatcher import Dispatcher, Timer
from app.safeguarding.escalation import escalate_overdue

# Timers the dispatcher runs besides delivery: escalation of overdue acknowledgement Tasks.
TIMERS: list[Timer] = [escalate_overdue]


def make_dispatcher(ctx: AppContext, *, ws: WebSocketRegistry | None = None, **kw: object) -> Dispatcher:
    return Dispatcher(ctx, ws=ws, timers=list(TIMERS), **kw)  # type: ignore[arg-type]


async def run_standalone(settings: Settings) -> None:
    """`safeflag dispatcher`: deliver until SIGTERM/SIGINT, then finish the round and exit."""
    import asyncio
    import signal

    from app.observability import configure_logging

    configure_logging(settings.log_level)
    ctx = AppContext.from_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await make_dispatcher(ctx).run(stop)
    finally:
        await ctx.close()

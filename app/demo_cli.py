"""`safeflag demo`: migrate the configured database, run the app in-process (over
httpx's ASGI transport, lifespan included) with a notification dispatcher and a real webhook receiver on
127.0.0.1, play the story of app/demo/story.py step by step, print what each step found and its latency, then
a summary table. Exit code 0 when every step passed, 1 otherwise (2: the issuer key is unsafe).
Registered on the `safeflag` app by `register(app)` in app/cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.cli_errors import describe, fail, safeflag_script, say_error
from app.config import get_settings
from app.security.keys import InsecureKeyError

if TYPE_CHECKING:
    from app.demo.story import Story

MARK = {"OK": "[green]OK[/green]", "FAILED": "[red]FAILED[/red]", "skipped": "[yellow]skipped[/yellow]"}


@dataclass
class Result:
    number: int
    title: str
    status: str  # OK | FAILED | skipped
    ms: float | None = None


async def play(story: Story, out: Console) -> list[Result]:
    """Each step in turn; one whose prerequisite did not pass is skipped, the others still run."""
    from app.demo.story import StepFailed

    results: list[Result] = []
    for number, (title, needs, step) in enumerate(story.steps, start=1):
        if any(results[n - 1].status != "OK" for n in needs):
            results.append(Result(number, title, "skipped"))
            out.print(f"{number}. {title}  {MARK['skipped']} (needs step {', '.join(map(str, needs))})")
            continue
        story.notes, story.latency_ms = [], None
        started = time.perf_counter()
        try:
            await step()
            status, error = "OK", ""
        except (StepFailed, TimeoutError) as exc:
            status, error = "FAILED", str(exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected answer fails the step, not the whole demo
            status, error = "FAILED", f"{type(exc).__name__}: {exc}"
        ms = story.latency_ms if story.latency_ms is not None else (time.perf_counter() - started) * 1000
        results.append(Result(number, title, status, ms))
        out.print(f"{number}. {title}  {MARK[status]}  {ms:.0f} ms")
        for line in story.notes:
            out.print(f"   {escape(line)}")
        if error:
            out.print(f"   [red]{escape(error)}[/red]")
    return results


def summary(results: list[Result]) -> Table:
    table = Table(title="SafeFlag demo summary")
    table.add_column("step")
    table.add_column("result")
    table.add_column("latency ms", justify="right")
    for r in results:
        table.add_row(f"{r.number}. {r.title}", MARK[r.status], "-" if r.ms is None else f"{r.ms:.0f}")
    return table


async def run(out: Console) -> int:
    # imported here, not at the top: every `safeflag` command loads this module
    import httpx
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.context import AppContext
    from app.demo.receiver import Receiver
    from app.demo.story import StepFailed, Story, new_secret
    from app.main import create_app
    from app.notify.allow import host_port, names_host
    from app.resource_rules import resource_rules
    from app.storage.migrate import upgrade
    from app.worker import make_dispatcher

    # the demo runs its own dispatcher (below), whatever SAFEFLAG_DISPATCHER_IN_PROCESS says; its
    # request logs would drown the story, so only problems are logged
    settings = get_settings(dispatcher_in_process=False, log_level="WARNING")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = AppContext.from_settings(settings, interceptors=resource_rules())
    try:
        database = make_url(settings.effective_database_url).render_as_string(hide_password=True)
        out.print(f"SafeFlag demo on {escape(database)} (FHIR base {settings.fhir_base})")
        try:
            await upgrade(ctx.engine)
            app = create_app(ctx=ctx)
        except (OSError, SQLAlchemyError) as exc:
            say_error(f"cannot migrate the database: {describe(exc)}")
            return 1
        async with app.router.lifespan_context(app):
            stop = asyncio.Event()
            dispatcher = asyncio.create_task(make_dispatcher(ctx, ws=app.state.ws_registry).run(stop))
            receiver = Receiver(new_secret())
            await receiver.start()
            # the receiver listens on a free loopback port, which this run allows when the allow-list
            # lets 127.0.0.1 through at all (as the default does, for its default ports only)
            if names_host(settings.webhook_hosts, "127.0.0.1"):
                settings.webhook_allow += "," + host_port(receiver.url)
            try:
                transport = httpx.ASGITransport(app=app)
                base = settings.base_url
                async with httpx.AsyncClient(transport=transport, base_url=base, timeout=30) as http:
                    story = Story(http, settings, receiver, ctx.clock)
                    results = await play(story, out)
                    if "subscription" in story.state:
                        with contextlib.suppress(StepFailed, httpx.HTTPError):
                            await story.switch_off()
            finally:
                await receiver.stop()
                stop.set()
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                    await asyncio.wait_for(dispatcher, timeout=10)
    finally:
        await ctx.close()
    out.print(summary(results))
    print_web_urls(out, settings.base_url)
    failed = [r for r in results if r.status != "OK"]
    out.print("[red]demo failed[/red]" if failed else "[green]demo complete: every step OK[/green]")
    return 1 if failed else 0


def print_web_urls(out: Console, base_url: str) -> None:
    """Where to see the story in a browser: the web app with the development sign-in (loopback only)."""
    from app.web.dev_sign_in import PEOPLE

    app_url = base_url.rstrip("/") + "/app"
    out.print("See it in the browser: start the server with development sign-in, "
              f"[bold]SAFEFLAG_WEB_DEV_SIGN_IN=1 {escape(safeflag_script())} serve[/bold], then open")
    out.print(f"   {app_url}/sign-in and sign in as one of:")
    for person in PEOPLE:
        out.print(f"   {escape(person.name)} ({escape(person.description)})")


def demo() -> None:
    """Seed a synthetic borough (test-range NHS numbers only) and play the end-to-end story: flags, an ED
    attendance, the health visitor's notification, a MASH referral copy; prints each step and its latency."""
    out = Console(soft_wrap=True)
    try:
        code = asyncio.run(run(out))
    except InsecureKeyError as exc:
        raise fail(f"refusing to start: {exc}") from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

"""Worker processes for `safeflag serve --workers N`: forked from a parent that has imported the app.

uvicorn makes each worker with multiprocessing's `spawn`: a fresh interpreter that imports the command
line again (as `__mp_main__`) and then the whole application, after the parent's own imports and
migration. With two workers on two cores the first `/readyz` came about 3 s after the start, most of
it importing the same modules three times. Here the parent imports the application once, after the
migration (`preload`, which `safeflag serve` runs whatever the number of workers), and each worker is
a `fork` of it: it starts with every module loaded and only builds its app (`create_app`) and opens
its own database connections, LISTEN connection and HTTP client in its lifespan.

Forking is safe only from a parent with nothing live that a child could share: no event loop running
and no database connection open. `safeflag serve` forks after `asyncio.run` of the migration has
returned (its loop closed, its engine disposed) and before anything else starts; uvicorn's supervisor
loop, which forks a replacement for a worker that died, runs no event loop and opens no connection
either. uvicorn's supervision (restarting a dead worker, SIGHUP, SIGTTIN, SIGTTOU) is unchanged: only
how a worker process is made differs.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from socket import socket
from typing import Any

# the signals uvicorn's supervisor queues for itself in the parent: a worker takes them as any process
# does (uvicorn's server sets its own SIGINT/SIGTERM handlers when it runs)
_PARENT_ONLY = ("SIGHUP", "SIGQUIT", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def forked_subprocess(config: Any, target: Callable[..., None], sockets: list[socket]) -> BaseProcess:
    """uvicorn's `get_subprocess`, with `fork` instead of `spawn` (the worker is not started yet)."""
    return multiprocessing.get_context("fork").Process(
        target=_worker_started, kwargs={"config": config, "target": target, "sockets": sockets}
    )


def _worker_started(config: Any, target: Callable[..., None], sockets: list[socket]) -> None:
    for name in _PARENT_ONLY:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    config.configure_logging()
    with contextlib.suppress(KeyboardInterrupt):  # the parent asked every worker to stop: nothing to report
        target(sockets=sockets)


def preload() -> None:
    """Import the app and what its creation, lifespan and `/readyz` import when they run, read this
    build's migration head, then freeze what is loaded: the garbage collector no longer walks those
    objects (well over 100 000 of them: modules, classes, compiled rules) in each full collection, a
    pause of tens of milliseconds in the middle of requests and deliveries, and a forked worker does
    not copy their pages by writing to their collector headers."""
    import app.main
    import app.storage.migrate
    import app.web.pages
    import app.web.routes
    import app.worker

    app.storage.migrate.head_revision()
    gc.freeze()


def use_fork() -> None:
    """Make uvicorn's multi-process supervisor fork its workers (call once, just before `uvicorn.run`)."""
    from uvicorn.supervisors import multiprocess

    multiprocess.get_subprocess = forked_subprocess  # type: ignore[attr-defined,assignment]

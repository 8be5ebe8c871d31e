"""Which dispatchers are alive: the identity a delivery lease names, and how another process tells
whether the process holding a lease is still there.

A lease (`subscription_state.lease_owner/lease_until`, app/notify/delivery.py) makes one dispatcher
the only sender of a subscription's notifications. Its time limit alone made a restarted server wait
out the killed process's lease (30 s plus the channel timeout) before any notice of that
subscription went out again. So each dispatcher holds a lock that the operating system or the
database drops the moment its process is gone, and names that lock in its leases:

- PostgreSQL: a session advisory lock `pg_advisory_lock(NAMESPACE, token)` on the dispatcher's own
  connection (the one it LISTENs on). PostgreSQL ends a session whose client is gone (a killed
  process's socket is closed by the kernel) and its locks with it; `pg_locks` shows who holds one.
- SQLite (one host by nature): an exclusive `flock` on `<database>.dispatchers/<token>.lock`. The
  kernel drops it when the process dies; a lock another process can take belongs to nobody alive.

Owners are `pg:<token>:<host>:<pid>` or `file:<token>:<host>:<pid>`; any other owner (or one whose
lock cannot be checked) is left to its lease's time limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

log = logging.getLogger("safeflag.dispatcher")

NAMESPACE = 0x5AF1  # first key of the two-key advisory lock: SafeFlag dispatchers
_HELD = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
    " AND classid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _suffix() -> str:
    return f"{socket.gethostname()[:24]}:{os.getpid()}"


class Liveness:
    """No lock: the owner can be told apart, but nobody can prove it dead (time limits only)."""

    def __init__(self) -> None:
        self.token = secrets.randbelow(2**31 - 1) + 1
        self.owner = f"none:{self.token}:{_suffix()}"

    async def dead(self, owners: set[str]) -> set[str]:
        """Of these lease owners (never this one), those proved gone."""
        return set()

    def close(self) -> None:
        return None


class PgLiveness(Liveness):
    """A session advisory lock on `conn`, the dispatcher's own asyncpg connection."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self.conn = conn
        self.owner = f"pg:{self.token}:{_suffix()}"

    async def hold(self) -> None:
        # try, never wait: after a reconnection the lost session may hold it a little longer (then
        # this process still counts as alive through it)
        await self.conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", NAMESPACE, self.token)

    async def dead(self, owners: set[str]) -> set[str]:
        tokens = {o: _token(o, "pg") for o in owners}
        if not any(tokens.values()) or self.conn.is_closed():
            return set()
        held = {r[0] for r in await self.conn.fetch(_HELD, NAMESPACE)}
        return {o for o, t in tokens.items() if t is not None and t not in held}


class FileLiveness(Liveness):
    """An exclusive flock on a file in `directory` (next to the SQLite database)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.owner = f"file:{self.token}:{_suffix()}"
        directory.mkdir(parents=True, exist_ok=True)
        self._sweep()
        self._fd = os.open(self._path(self.token), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _path(self, token: int) -> Path:
        return self.directory / f"{token}.lock"

    def _gone(self, path: Path) -> bool:
        """True when nobody holds `path`'s lock (the file is then removed)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # also drops the shared lock, if taken
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True

    def _sweep(self) -> None:
        """Remove the lock files of processes that are gone (killed ones leave theirs behind)."""
        for path in self.directory.glob("*.lock"):
            self._gone(path)

    async def dead(self, owners: set[str]) -> set[str]:
        out = set()
        for owner in owners:
            token = _token(owner, "file")
            if token is not None and token != self.token and self._gone(self._path(token)):
                out.add(owner)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                self._path(self.token).unlink()
            os.close(self._fd)
            self._fd = -1


def _token(owner: str, kind: str) -> int | None:
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != kind or not parts[1].isdigit():
        return None
    return int(parts[1])


def sqlite_lock_dir(database: str | None) -> Path | None:
    """Where the dispatchers of this SQLite database keep their lock files (None: in memory)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    return path.with_name(path.name + ".dispatchers")

"""What the rules of a write tell beside its result (`Notes`): warning issues, response headers, and
work to run once the unit of work has committed. A rule reaches them through `WriteContext.note()`.

The warnings go in the OperationOutcome of `Prefer: return=OperationOutcome` and in a Bundle entry's
`response.outcome`; several values of one header are listed once each, comma-separated; the committed
work (log lines, metrics) is given the app's Metrics (None outside a request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.errors import Issue

log = logging.getLogger("safeflag")


@dataclass
class Notes:
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)
    committed: list[Callable[[Any], None]] = field(default_factory=list)

    def header(self, name: str, value: str) -> None:
        values = self.headers.setdefault(name, [])
        if value not in values:
            values.append(value)

    def header_values(self) -> dict[str, str]:
        return {name: ", ".join(values) for name, values in self.headers.items()}

    def merge(self, other: Notes) -> None:
        self.issues += other.issues
        for name, values in other.headers.items():
            for value in values:
                self.header(name, value)
        self.committed += other.committed

    def run_committed(self, metrics: Any) -> None:
        for work in self.committed:
            try:
                work(metrics)
            except Exception:
                log.exception("after-commit work failed")

"""Secrets never reach the logs: bearer tokens, JWTs, client assertions and PEM private keys are
replaced in every log record (message, arguments, extra fields and exception text) by a logging
filter installed on the `safeflag` logger's handlers.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

_PATTERNS = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL), "[redacted-key]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1[redacted]"),
    (re.compile(r"(?i)\b(client_assertion|access_token|subscription-secret)([\"']?\s*[=:]\s*[\"']?)[^&\s\"',}\[]+"),
     r"\1\2[redacted]"),
)
_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STD and not key.startswith("_"):
                setattr(record, key, _clean(value))
        if record.exc_info and record.exc_info[0] is not None:
            # formatters would print the raw traceback (exception messages may quote a header)
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.__dict__["exc"] = record.exc_text
            record.exc_info = None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (default: `safeflag`), once."""
    logger = logger or logging.getLogger("safeflag")
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())

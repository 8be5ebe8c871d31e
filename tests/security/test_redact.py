"""Secrets never reach the logs: tokens, assertions and private keys are redacted from log records."""

from __future__ import annotations

import io
import json
import logging

from app.observability import JsonFormatter
from app.security.redact import RedactingFilter, install, redact

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"


def test_redact_patterns() -> None:
    assert redact(f"Authorization: Bearer {JWT}") == "Authorization: Bearer [redacted-jwt]"
    assert redact("authorization: bearer opaque-token_123") == "authorization: bearer [redacted]"
    assert redact(f"grant_type=client_credentials&client_assertion={JWT}&scope=x") == (
        "grant_type=client_credentials&client_assertion=[redacted-jwt]&scope=x")
    assert redact('{"access_token": "abc.def", "token_type": "bearer"}') == (
        '{"access_token": "[redacted]", "token_type": "bearer"}')
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----"
    assert redact(f"key: {pem} end") == "key: [redacted-key] end"
    assert redact("nothing secret here: Patient/123") == "nothing secret here: Patient/123"


def test_filter_cleans_message_args_extras_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("safeflag.test-redact")
    logger.handlers[:] = [handler]
    logger.propagate = False
    install(logger)
    install(logger)  # idempotent
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    try:
        raise ValueError(f"bad header Bearer {JWT}")
    except ValueError:
        logger.exception("token %s refused", JWT, extra={"auth": f"Bearer {JWT}", "n": 3})
    line = json.loads(stream.getvalue())
    assert line["msg"] == "token [redacted-jwt] refused"
    assert line["auth"] == "Bearer [redacted-jwt]" and line["n"] == 3
    assert "ValueError: bad header Bearer [redacted-jwt]" in line["exc"]
    assert JWT not in stream.getvalue()

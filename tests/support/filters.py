"""Subscription-style filters for tests of the in-memory matcher: `Type?a=1&b=2` -> criteria."""

from __future__ import annotations

from urllib.parse import parse_qsl

from app.errors import BadRequest, Issue
from app.fhir.search.criteria import Criterion, parse_criterion
from app.fhir.search.definitions import SUPPORTED_TYPES


def parse_filter(text: str, base: str) -> tuple[str, list[Criterion]]:
    """`Type?a=1&b=2` -> (Type, criteria). Unknown types or parameters are a 400, never ignored: a
    filter that silently matched everything would let a comparison with the SQL search pass vacuously."""
    rtype, _, query = text.partition("?")
    if rtype not in SUPPORTED_TYPES:
        raise BadRequest(f"Unknown resource type '{rtype}' in filter '{text}'", msg_id="SF-0400",
                         code="not-supported")
    criteria, unknown = [], []
    for key, value in parse_qsl(query, keep_blank_values=True):
        crit = parse_criterion(rtype, key, value, base)
        if crit is None:
            unknown.append(key)
        else:
            criteria.append(crit)
    if unknown:
        raise BadRequest(issues=[
            Issue("not-supported", f"Unknown search parameter '{u}' for {rtype}", expression=(u,), msg_id="SF-0400")
            for u in unknown
        ])
    return rtype, criteria

"""Topic-based Subscriptions in R4 (Subscriptions Backport IG,
https://hl7.org/fhir/uv/subscriptions-backport/): parsing, validation and the write-only secret.

A Subscription names a topic canonical in `criteria`, narrows it with `backport-filter-criteria`
extensions (`Communication?recipient=PractitionerRole/1`, several are ANDed), chooses a payload
(`empty`, `id-only` default, `full-resource`) and a channel (`rest-hook` or `websocket`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from app.errors import Issue, Unprocessable
from app.fhir.search.limits import Budget, SearchLimits, SearchTooCostly
from app.fhir.search.params import Criterion, parse_criterion
from app.notify.allow import allowed, host_port, reserved_header, target
from app.notify.topics import TOPICS, Topic
from app.vocabulary import BACKPORT
from app.vocabulary import SUBSCRIPTION_SECRET as SECRET_EXT

FILTER_EXT = BACKPORT + "backport-filter-criteria"
PAYLOAD_EXT = BACKPORT + "backport-payload-content"
HEARTBEAT_EXT = BACKPORT + "backport-heartbeat-period"
TIMEOUT_EXT = BACKPORT + "backport-timeout"
MAX_COUNT_EXT = BACKPORT + "backport-max-count"
CONTENT_CODES = ("empty", "id-only", "full-resource")
MIN_SECRET = 32


@dataclass(frozen=True)
class SubscriptionSpec:
    id: str
    status: str
    topic: Topic
    criteria: tuple[Criterion, ...]
    channel_type: str
    endpoint: str | None
    headers: tuple[tuple[str, str], ...] = ()
    content: str = "id-only"
    heartbeat_seconds: int | None = None
    timeout_seconds: float = 10.0
    max_count: int = 50
    filters: tuple[str, ...] = field(default=())


def _ext(node: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in node.get("extension") or [] if isinstance(e, dict) and e.get("url") == url]


def _fail(text: str, expression: str, msg_id: str) -> Issue:
    return Issue("invalid", text, expression=(expression,), msg_id=msg_id)


def split_secret(content: dict[str, Any]) -> tuple[dict[str, Any], str | None, list[Issue]]:
    """Remove the write-only `subscription-secret` extension: (content without it, secret, issues)."""
    secrets = _ext(content, SECRET_EXT)
    if not secrets:
        return content, None, []
    out = copy.deepcopy(content)
    out["extension"] = [e for e in out.get("extension", []) if e.get("url") != SECRET_EXT]
    if not out["extension"]:
        del out["extension"]
    value = secrets[0].get("valueString")
    issues = []
    if not isinstance(value, str) or len(value) < MIN_SECRET:
        issues.append(_fail(f"subscription-secret must be a string of at least {MIN_SECRET} characters",
                            "Subscription.extension", "SF-0702"))
    return out, value if isinstance(value, str) else None, issues


def header_issues(spec: SubscriptionSpec) -> list[Issue]:
    """Headers a subscription may not set (app/notify/allow.py), refused when it is written; one stored
    before the rule is dropped at delivery instead, so its notices still go out."""
    return [_fail(f"A channel header may not set '{name}': SafeFlag sets it, or it routes or frames the request",
                  f"Subscription.channel.header[{i}]", "SF-0712")
            for i, (name, _value) in enumerate(spec.headers) if reserved_header(name)]


def parse_spec(sub_id: str, content: dict[str, Any], *, base: str, webhook_allow: list[str],
               limits: SearchLimits | None = None) -> SubscriptionSpec:
    """Validate a Subscription against what this server supports; 422 naming each problem. With
    `limits` (a write), its filters together are bounded as one search is: 400 too-costly beyond."""
    issues: list[Issue] = []
    budget = Budget(limits)
    criteria_url = content.get("criteria") or ""
    topic = TOPICS.get(criteria_url)
    if topic is None:
        issues.append(_fail(f"Unknown subscription topic '{criteria_url}'; supported: {', '.join(sorted(TOPICS))}",
                            "Subscription.criteria", "SF-0701"))
    criteria: list[Criterion] = []
    filters: list[str] = []
    for i, ext in enumerate(_ext(content.get("_criteria") or {}, FILTER_EXT)):
        raw = ext.get("valueString")
        expr = f"Subscription.criteria.extension[{i}]"
        if not isinstance(raw, str) or "?" not in raw:
            issues.append(_fail("A filter must be a string 'Type?param=value'", expr, "SF-0703"))
            continue
        rtype, _, query = raw.partition("?")
        if topic is not None and rtype != topic.resource_type:
            issues.append(_fail(f"Filter type '{rtype}' does not match topic resource {topic.resource_type}",
                                expr, "SF-0703"))
            continue
        for key, value in parse_qsl(query, keep_blank_values=True):
            name = key.split(":")[0].split(".")[0]
            if topic is not None and name not in topic.filters:
                issues.append(_fail(f"Filter parameter '{name}' is not allowed for topic {topic.name} "
                                    f"(allowed: {', '.join(topic.filters)})", expr, "SF-0704"))
                continue
            try:
                budget.spend(key, criteria=1)
                crit = parse_criterion(rtype, key, value, base, budget)
            except SearchTooCostly:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad filter value is the client's error
                issues.append(_fail(f"Invalid filter '{key}={value}': {exc}", expr, "SF-0704"))
                continue
            if crit is None:
                issues.append(_fail(f"Unknown filter parameter '{key}'", expr, "SF-0704"))
            else:
                criteria.append(crit)
        filters.append(raw)
    channel = content.get("channel") or {}
    ctype = channel.get("type")
    if ctype not in ("rest-hook", "websocket"):
        issues.append(_fail(f"Channel type '{ctype}' is not supported (rest-hook, websocket)",
                            "Subscription.channel.type", "SF-0705"))
    endpoint = channel.get("endpoint")
    if ctype == "rest-hook":
        if not isinstance(endpoint, str) or target(endpoint) is None:
            issues.append(_fail("A rest-hook subscription needs an http(s) endpoint", "Subscription.channel.endpoint",
                                "SF-0706"))
        elif not allowed(endpoint, webhook_allow):
            issues.append(_fail(f"Endpoint '{host_port(endpoint)}' is not in SAFEFLAG_WEBHOOK_ALLOW (entries are "
                                "host:port, or a host for its scheme's default port)",
                                "Subscription.channel.endpoint", "SF-0707"))
    payload = channel.get("_payload") or {}
    content_code = "id-only"
    for ext in _ext(payload, PAYLOAD_EXT):
        content_code = ext.get("valueCode", "")
    if content_code not in CONTENT_CODES:
        issues.append(_fail(f"Payload content '{content_code}' is not one of {', '.join(CONTENT_CODES)}",
                            "Subscription.channel.payload", "SF-0708"))
    if channel.get("payload") not in (None, "application/fhir+json", "application/json"):
        issues.append(_fail("Only application/fhir+json payloads are supported", "Subscription.channel.payload",
                            "SF-0708"))
    headers = []
    for i, h in enumerate(channel.get("header") or []):
        name, sep, value = str(h).partition(":")
        if not sep or not name.strip() or any(c in name for c in "\r\n") or any(c in value for c in "\r\n"):
            issues.append(_fail("A channel header must be 'Name: value'", f"Subscription.channel.header[{i}]",
                                "SF-0709"))
        else:
            headers.append((name.strip(), value.strip()))
    heartbeat = next((e.get("valueUnsignedInt") for e in _ext(channel, HEARTBEAT_EXT)), None)
    timeout = next((e.get("valueUnsignedInt") for e in _ext(channel, TIMEOUT_EXT)), None)
    max_count = next((e.get("valuePositiveInt") for e in _ext(channel, MAX_COUNT_EXT)), None)
    if issues:
        raise Unprocessable(issues=issues)
    assert topic is not None and ctype is not None
    return SubscriptionSpec(
        id=sub_id,
        status=content.get("status", "requested"),
        topic=topic,
        criteria=tuple(criteria),
        channel_type=ctype,
        endpoint=endpoint,
        headers=tuple(headers),
        content=content_code,
        heartbeat_seconds=int(heartbeat) if heartbeat else None,
        timeout_seconds=float(min(max(int(timeout), 1), 60)) if timeout else 10.0,
        max_count=int(max_count) if max_count else 50,
        filters=tuple(filters),
    )

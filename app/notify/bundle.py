"""Notification Bundles in the R4 Backport shape (type `history`, first entry a Parameters
profiled as backport-subscription-status-r4; https://hl7.org/fhir/uv/subscriptions-backport/)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.stored import format_instant
from app.vocabulary import BACKPORT

STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = BACKPORT + "backport-subscription-notification-r4"


@dataclass(frozen=True)
class Event:
    number: int
    occurred_at: datetime
    focus_type: str
    focus_id: str
    focus_version: int
    action: str
    resource: dict[str, Any] | None  # the focus version, for full-resource payloads
    context: tuple[str, ...] = ()  # additional-context references, e.g. Patient/1
    withheld: bool = False  # the reader may not see the focus: number and timestamp only (`$events`)


def status_parameters(
    *,
    fhir_base: str,
    sub_id: str,
    topic_url: str,
    status: str,
    type_: str,
    events_since_start: int,
    events: list[Event] = (),  # type: ignore[assignment]
    content: str = "id-only",
    error: str | None = None,
) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{fhir_base}/Subscription/{sub_id}"}},
    ]
    if content != "empty":
        params.append({"name": "topic", "valueCanonical": topic_url})
    params += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": type_},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for ev in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(ev.number)},
            {"name": "timestamp", "valueInstant": format_instant(ev.occurred_at)},
        ]
        if content != "empty" and not ev.withheld:
            parts.append(
                {"name": "focus", "valueReference": {"reference": f"{fhir_base}/{ev.focus_type}/{ev.focus_id}"}}
            )
            for ref in ev.context:
                parts.append({"name": "additional-context", "valueReference": {"reference": f"{fhir_base}/{ref}"}})
        params.append({"name": "notification-event", "part": parts})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    sid = str(uuid.uuid4())
    return {"resourceType": "Parameters", "id": sid, "meta": {"profile": [STATUS_PROFILE]}, "parameter": params}


def notification_bundle(
    *,
    fhir_base: str,
    sub_id: str,
    topic_url: str,
    status: str,
    type_: str,
    events_since_start: int,
    now: datetime,
    events: list[Event] = (),  # type: ignore[assignment]
    content: str = "id-only",
    error: str | None = None,
    notice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`notice`: an OperationOutcome for the status entry's `response.outcome` (events withheld)."""
    params = status_parameters(
        fhir_base=fhir_base, sub_id=sub_id, topic_url=topic_url, status=status, type_=type_,
        events_since_start=events_since_start, events=events, content=content, error=error,
    )
    operation = "$events" if type_ == "query-event" else "$status"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{params['id']}",
            "resource": params,
            "request": {"method": "GET", "url": f"{fhir_base}/Subscription/{sub_id}/{operation}"},
            "response": {"status": "200", **({"outcome": notice} if notice else {})},
        }
    ]
    if content != "empty":
        for ev in events:
            if ev.withheld:
                continue
            entry: dict[str, Any] = {"fullUrl": f"{fhir_base}/{ev.focus_type}/{ev.focus_id}"}
            if content == "full-resource" and ev.resource is not None:
                entry["resource"] = ev.resource
            method = {"create": "POST", "update": "PUT", "delete": "DELETE"}[ev.action]
            entry["request"] = {
                "method": method,
                "url": ev.focus_type if method == "POST" else f"{ev.focus_type}/{ev.focus_id}",
            }
            entry["response"] = {
                "status": {"POST": "201", "PUT": "200", "DELETE": "204"}[method],
                "etag": f'W/"{ev.focus_version}"',
            }
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(now),
        "entry": entries,
    }

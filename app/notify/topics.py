"""The four subscription topics (contract section 4), as code the dispatcher runs.

Each topic names the resource it fires on, the change that triggers it, and the filter parameters a
Subscription may use (`backport-filter-criteria`, evaluated with the shared search definitions).
The published descriptors in `fhir_profiles/` document the same topics for clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CANONICAL_BASE = "https://fhir.safeflag.example/SubscriptionTopic/"
COMM_CATEGORY = "https://fhir.safeflag.example/CodeSystem/safeguarding-communication-category"


def _categories(content: dict[str, Any]) -> set[str]:
    out = set()
    for cat in content.get("category") or []:
        for coding in cat.get("coding") or []:
            if coding.get("system") == COMM_CATEGORY and coding.get("code"):
                out.add(coding["code"])
    return out


@dataclass(frozen=True)
class Topic:
    name: str
    resource_type: str
    filters: tuple[str, ...]
    trigger: Callable[[str, dict[str, Any]], bool]  # (action, content) -> fires?
    description: str

    @property
    def url(self) -> str:
        return CANONICAL_BASE + self.name


def _communication_of(*codes: str) -> Callable[[str, dict[str, Any]], bool]:
    wanted = set(codes)

    def fires(action: str, content: dict[str, Any]) -> bool:
        return action == "create" and bool(_categories(content) & wanted)

    return fires


def _flag_change(action: str, content: dict[str, Any]) -> bool:
    return action in ("create", "update")


TOPICS: dict[str, Topic] = {
    t.url: t
    for t in (
        Topic(
            "ed-attendance",
            "Communication",
            ("recipient", "patient"),
            _communication_of("ed-attendance", "did-not-wait", "think-family"),
            "A notice of a child's ED attendance (or did-not-wait, or think-family) was created",
        ),
        Topic(
            "safeguarding-flag",
            "Flag",
            ("patient", "category", "author"),
            _flag_change,
            "A safeguarding Flag was raised or changed status",
        ),
        Topic(
            "mash-referral",
            "Communication",
            ("sender", "recipient", "patient"),
            _communication_of("mash-referral"),
            "A copy of a referral to the local authority MASH was stored",
        ),
        Topic(
            "access-notification",
            "Communication",
            ("recipient",),
            _communication_of("access-notification"),
            "An unscheduled-care setting looked at a child's safeguarding flags",
        ),
    )
}

TOPIC_RESOURCE_TYPES = frozenset(t.resource_type for t in TOPICS.values())


def topics_for(resource_type: str, action: str, content: dict[str, Any] | None) -> list[Topic]:
    if content is None:
        return []
    return [t for t in TOPICS.values() if t.resource_type == resource_type and t.trigger(action, content)]

"""The four subscription topics, read from the SubscriptionTopic resources SafeFlag publishes.

`fhir_profiles/SubscriptionTopic/<name>.json` (R4 Basic with the Subscriptions Backport extensions)
states for each topic the resource it fires on (`resourceTrigger.resource`), the interactions that
trigger it (`supportedInteraction`), the condition on the new content (`queryCriteria.current`,
`<element>=<system>|<code>,...`: a coding of that element matches one of the pairs) and the filter
parameters a Subscription may use (`canFilterBy`, evaluated with the shared search definitions).
The dispatcher runs what those files say, so clients read exactly the rules the server applies.
They are read once, when this module is imported at start; a missing topic or a file this module
cannot read stops the start with an error naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.fhir.profiles import ConformanceStore, get_store
from app.vocabulary import HL7_STRUCTURE_DEFINITION as _RESOURCE
from app.vocabulary import SUBSCRIPTION_TOPIC, TopicName
from app.vocabulary import TOPIC_EXTENSION as _EXT

NAMES = (TopicName.ED_ATTENDANCE, TopicName.SAFEGUARDING_FLAG, TopicName.MASH_REFERRAL,
         TopicName.ACCESS_NOTIFICATION)


class TopicFileError(RuntimeError):
    """A published SubscriptionTopic is missing or says something the dispatcher cannot run."""


@dataclass(frozen=True)
class Topic:
    name: str
    resource_type: str
    filters: tuple[str, ...]
    trigger: Callable[[str, dict[str, Any]], bool]  # (action, content) -> fires?
    description: str

    @property
    def url(self) -> str:
        return SUBSCRIPTION_TOPIC + self.name


def _value(ext: dict[str, Any]) -> Any:
    return next((v for k, v in ext.items() if k.startswith("value")), None)


def _parts(ext: dict[str, Any]) -> list[tuple[str, Any]]:
    """(url, value) of each sub-extension, in order; a nested one's value is its own extension."""
    return [(sub.get("url", ""), _value(sub) if "extension" not in sub else sub) for sub in ext.get("extension", ())]


def _criteria(current: str, where: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """`element=system|code,...` as (element, {(system, code)}); TopicFileError for anything else."""
    element, eq, values = current.partition("=")
    pairs = [v.partition("|") for v in values.split(",")] if eq else []
    if not element.isidentifier() or not pairs or any(not bar or not s or not c for s, bar, c in pairs):
        raise TopicFileError(f"{where}: queryCriteria.current {current!r} is not element=system|code[,...]")
    return element, frozenset((s, c) for s, _, c in pairs)


def _trigger(interactions: frozenset[str], criteria: tuple[str, frozenset[tuple[str, str]]] | None
             ) -> Callable[[str, dict[str, Any]], bool]:
    def fires(action: str, content: dict[str, Any]) -> bool:
        if action not in interactions:
            return False
        if criteria is None:
            return True
        element, wanted = criteria
        value = content.get(element) or []
        return any((coding.get("system"), coding.get("code")) in wanted
                   for concept in (value if isinstance(value, list) else [value]) if isinstance(concept, dict)
                   for coding in concept.get("coding") or [] if isinstance(coding, dict))

    return fires


def _topic(name: str, basic: dict[str, Any], filters: list[tuple[str, str]], where: str) -> Topic:
    exts = {e.get("url", "")[len(_EXT):]: e for e in basic.get("extension", ()) if e.get("url", "").startswith(_EXT)}
    trigger = exts.get("resourceTrigger")
    if trigger is None:
        raise TopicFileError(f"{where}: no resourceTrigger")
    parts = _parts(trigger)
    resource = next((str(v) for u, v in parts if u == "resource"), "")
    resource_type = resource.removeprefix(_RESOURCE)
    interactions = frozenset(str(v) for u, v in parts if u == "supportedInteraction")
    if not resource_type.isalpha() or not interactions <= {"create", "update", "delete"} or not interactions:
        raise TopicFileError(f"{where}: resourceTrigger needs a resource and create/update/delete interactions")
    query = next((dict(_parts(v)) for u, v in parts if u == "queryCriteria"), None)
    current = query.get("current") if query else None
    if any(rtype != resource_type for rtype, _ in filters):
        raise TopicFileError(f"{where}: canFilterBy names a resource other than {resource_type}")
    description = _value(exts.get("description", {}))
    return Topic(name, resource_type, tuple(f for _, f in filters),
                 _trigger(interactions, _criteria(str(current), where) if current is not None else None),
                 str(description or name))


def load_topics(store: ConformanceStore) -> dict[str, Topic]:
    """The topics `NAMES`, by canonical URL, from `store`'s SubscriptionTopic resources."""
    published = store.topics()
    out = {}
    for name in NAMES:
        url = SUBSCRIPTION_TOPIC + name
        where = f"{store.root}/SubscriptionTopic/{name}.json"
        if url not in published:
            raise TopicFileError(f"{where}: the subscription topic {url} is not published")
        out[url] = _topic(name, published[url], store.topic_filters(url), where)
    return out


TOPICS: dict[str, Topic] = load_topics(get_store())
TOPIC_RESOURCE_TYPES = frozenset(t.resource_type for t in TOPICS.values())


def topics_for(resource_type: str, action: str, content: dict[str, Any] | None) -> list[Topic]:
    if content is None:
        return []
    return [t for t in TOPICS.values() if t.resource_type == resource_type and t.trigger(action, content)]

"""Subscription topics come from the SubscriptionTopic resources in fhir_profiles/ (app/notify/topics.py):
what the dispatcher runs for each published topic, and a start that stops, naming the file, when a
topic is missing or says what the dispatcher cannot run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.fhir.profiles import ConformanceStore
from app.fhir.profiles.store import PROFILES_DIR
from app.notify.topics import TOPIC_RESOURCE_TYPES, TOPICS, TopicFileError, load_topics, topics_for

TOPIC = "https://fhir.safeflag.example/SubscriptionTopic/"
CATEGORY = "https://fhir.safeflag.example/CodeSystem/safeguarding-communication-category"


def _communication(*codes: str, system: str = CATEGORY) -> dict[str, Any]:
    return {"resourceType": "Communication", "category": [{"coding": [{"system": system, "code": c}]} for c in codes]}


def test_the_dispatcher_runs_the_four_published_topics() -> None:
    assert {url: (t.name, t.resource_type, t.filters) for url, t in TOPICS.items()} == {
        TOPIC + "ed-attendance": ("ed-attendance", "Communication", ("recipient", "patient")),
        TOPIC + "safeguarding-flag": ("safeguarding-flag", "Flag", ("patient", "category", "author")),
        TOPIC + "mash-referral": ("mash-referral", "Communication", ("sender", "recipient", "patient")),
        TOPIC + "access-notification": ("access-notification", "Communication", ("recipient",)),
    }
    assert {"Communication", "Flag"} == TOPIC_RESOURCE_TYPES
    assert TOPICS[TOPIC + "mash-referral"].description == (
        "A copy of a safeguarding referral to the local authority MASH was stored.")


@pytest.mark.parametrize(("rtype", "action", "content", "fired"), [
    ("Communication", "create", _communication("ed-attendance"), ["ed-attendance"]),
    ("Communication", "create", _communication("did-not-wait"), ["ed-attendance"]),
    ("Communication", "create", _communication("think-family"), ["ed-attendance"]),
    ("Communication", "create", _communication("mash-referral"), ["mash-referral"]),
    ("Communication", "create", _communication("access-notification", "mash-referral"),
     ["mash-referral", "access-notification"]),
    ("Communication", "update", _communication("ed-attendance"), []),  # only a new notice is news
    ("Communication", "create", _communication("ed-attendance", system="http://example.org/other"), []),
    ("Communication", "create", _communication("referral-outcome"), []),
    ("Communication", "create", {"resourceType": "Communication"}, []),
    ("Flag", "create", {"resourceType": "Flag"}, ["safeguarding-flag"]),
    ("Flag", "update", {"resourceType": "Flag"}, ["safeguarding-flag"]),
    ("Flag", "delete", {"resourceType": "Flag"}, []),
    ("Patient", "create", {"resourceType": "Patient"}, []),
])
def test_a_topic_fires_as_its_published_trigger_says(
    rtype: str, action: str, content: dict[str, Any], fired: list[str]
) -> None:
    assert [t.name for t in topics_for(rtype, action, content)] == fired


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    root = tmp_path / "fhir_profiles"
    shutil.copytree(PROFILES_DIR, root)
    return root


def test_the_same_files_anywhere_give_the_same_topics(profiles: Path) -> None:
    loaded = load_topics(ConformanceStore.load(profiles))
    assert {u: (t.resource_type, t.filters, t.description) for u, t in loaded.items()} == {
        u: (t.resource_type, t.filters, t.description) for u, t in TOPICS.items()}


def test_a_missing_topic_stops_the_start_naming_its_file(profiles: Path) -> None:
    (profiles / "SubscriptionTopic" / "mash-referral.json").unlink()
    with pytest.raises(TopicFileError) as err:
        load_topics(ConformanceStore.load(profiles))
    assert str(err.value) == (f"{profiles}/SubscriptionTopic/mash-referral.json: the subscription topic "
                              f"{TOPIC}mash-referral is not published")


def _rewrite(profiles: Path, name: str, change: Any) -> None:
    path = profiles / "SubscriptionTopic" / f"{name}.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _trigger(doc: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in doc["extension"] if e["url"].endswith(".resourceTrigger"))


def _set_current(value: str) -> Any:
    def change(doc: dict[str, Any]) -> None:
        query = next(e for e in _trigger(doc)["extension"] if e["url"] == "queryCriteria")
        next(e for e in query["extension"] if e["url"] == "current")["valueString"] = value

    return change


def _drop_trigger(doc: dict[str, Any]) -> None:
    doc["extension"] = [e for e in doc["extension"] if not e["url"].endswith(".resourceTrigger")]


def _interaction(doc: dict[str, Any]) -> None:
    next(e for e in _trigger(doc)["extension"] if e["url"] == "supportedInteraction")["valueCode"] = "read"


def _filter_resource(doc: dict[str, Any]) -> None:
    by = next(e for e in doc["extension"] if e["url"].endswith(".canFilterBy"))
    next(e for e in by["extension"] if e["url"] == "resource")["valueUri"] = "Flag"


@pytest.mark.parametrize(("change", "message"), [
    (_set_current("category:not=x"), "queryCriteria.current 'category:not=x' is not element=system|code[,...]"),
    (_set_current(f"category={CATEGORY}"), f"queryCriteria.current 'category={CATEGORY}' is not "
                                           "element=system|code[,...]"),
    (_set_current("category=|access-notification"), "queryCriteria.current 'category=|access-notification' is not "
                                                    "element=system|code[,...]"),
    (_drop_trigger, "no resourceTrigger"),
    (_interaction, "resourceTrigger needs a resource and create/update/delete interactions"),
    (_filter_resource, "canFilterBy names a resource other than Communication"),
])
def test_a_topic_the_dispatcher_cannot_run_stops_the_start_naming_its_file(
    profiles: Path, change: Any, message: str
) -> None:
    _rewrite(profiles, "access-notification", change)
    with pytest.raises(TopicFileError) as err:
        load_topics(ConformanceStore.load(profiles))
    assert str(err.value) == f"{profiles}/SubscriptionTopic/access-notification.json: {message}"

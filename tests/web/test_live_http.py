"""The live-update stream over HTTP against a real server, with sessions signed in through the real OpenID
Connect provider (tests/web/conftest.py), on SQLite and PostgreSQL: each reader hears only of records
she may read, her event ids are sealed, a reconnection with Last-Event-ID is told to catch up, and
stopping the server ends the open streams cleanly instead of holding its shutdown."""

from __future__ import annotations

import queue
import threading
from typing import Any

import httpx
from selenium import webdriver

from app.demo import borough as b
from app.web.positions import TOKEN_LENGTH
from tests.e2e.server import RunningServer
from tests.web.conftest import sign_in
from tests.web.flows import OTHER_USER, api, attend, seed_server, session_cookie, token
from tests.web.pages_data import OTHER_HV, OTHER_ORG, SEXUAL_HEALTH
from tests.web.provider import Provider

BOUND = 30.0  # seconds: a bound on waiting, not a timing assertion


class Events:
    """A server-sent event stream read by a thread: each event as a dict of its fields, then "end" when
    the server ends the response cleanly, or the transport error that cut it."""

    def __init__(self, server: RunningServer, cookie: str, last_event_id: str | None = None) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.seen: list[dict[str, str]] = []
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.client = httpx.Client(base_url=server.base_url, cookies={"safeflag_session": cookie},
                                   headers=headers, timeout=httpx.Timeout(10.0, read=None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            with self.client.stream("GET", "/app/events") as answer:
                assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
                fields: dict[str, str] = {}
                for line in answer.iter_lines():
                    if line == "" and fields:
                        self.queue.put(fields)
                        fields = {}
                    elif line and not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        fields[name] = value
            self.queue.put("end")
        except Exception as exc:  # noqa: BLE001 - handed to the test
            self.queue.put(exc)

    def next(self) -> Any:
        while True:
            item = self.queue.get(timeout=BOUND)
            if isinstance(item, dict) and "event" not in item:
                continue  # the `retry:` advice
            if isinstance(item, dict):
                self.seen.append(item)
            return item

    def names(self) -> list[str]:
        return [e["event"] for e in self.seen]


def signed_in(driver: webdriver.Chrome, server: RunningServer, sub: str) -> str:
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    sign_in(driver, server, sub)
    return session_cookie(driver)["safeflag_session"]


def note(server: RunningServer, headers: dict[str, str], **refs: Any) -> None:
    with api(server, headers) as client:
        r = client.post("/Communication", json={
            "resourceType": "Communication", "status": "completed", "subject": {"reference": b.CHILD},
            "payload": [{"contentString": "A note"}], **refs})
        assert r.status_code == 201, r.text


def test_a_stream_tells_its_reader_only_of_records_she_may_read(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    seed_server(web_server)
    provider.add_user("olive.other", OTHER_USER)
    hana = Events(web_server, signed_in(driver, web_server, "hana.visitor"))
    olive = Events(web_server, signed_in(driver, web_server, "olive.other"))
    assert (hana.next()["event"], olive.next()["event"]) == ("ready", "ready")
    other_hv = token(web_server, "health-visitor", org=OTHER_ORG, practitioner=OTHER_HV)
    sexual_health = token(web_server, "sexual-health-clinician", org=SEXUAL_HEALTH)

    attend(web_server)  # the demo 0-19 service's notice: Hana's
    assert hana.next()["event"] == "changed"
    # restricted as stored (a sexual-health writer), addressed to Hana's team: withheld from her, so no event
    note(web_server, sexual_health, sender={"reference": SEXUAL_HEALTH}, recipient=[{"reference": b.ZERO19}])
    note(web_server, other_hv, sender={"reference": OTHER_HV})  # the other service's own record: Olive's
    assert olive.next()["event"] == "changed"
    attend(web_server)
    assert hana.next()["event"] == "changed"
    note(web_server, other_hv, sender={"reference": OTHER_HV})
    assert olive.next()["event"] == "changed"
    # each connection delivers in order: had the attendances or the restricted note woken Olive, or the
    # restricted note or Olive's notes woken Hana, an extra `changed` would stand before the last one
    assert (hana.names(), olive.names()) == (["ready", "changed", "changed"], ["ready", "changed", "changed"])
    ids = [e["id"] for e in hana.seen + olive.seen]
    assert len(set(ids)) == len(ids)  # sealed afresh each time: equal positions do not even look equal
    assert all(len(i) == TOKEN_LENGTH and not i.isdigit() for i in ids)

    # the page comes back after a lost connection with its last id: told at once to catch up
    again = Events(web_server, signed_in(driver, web_server, "hana.visitor"), last_event_id=ids[2])
    assert again.next()["event"] == "changed"


def test_stopping_the_server_ends_the_open_streams_cleanly(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    seed_server(web_server)
    hana = Events(web_server, signed_in(driver, web_server, "hana.visitor"))
    assert hana.next()["event"] == "ready"
    try:
        assert web_server.stop() == 0
        # the body ended with its last chunk (the stream closed itself) rather than being cut when the
        # graceful stop gave up waiting for it (httpx.RemoteProtocolError: incomplete chunked read)
        assert hana.next() == "end"
        assert not any("Cancel" in line and "running task" in line for line in web_server.stderr_lines())
    finally:
        web_server.restart()

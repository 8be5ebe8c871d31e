"""The flows of the people in it, in a real browser against a real server signing in through a real
OpenID Connect provider (tests/web/conftest.py), on SQLite and PostgreSQL. Every page and state reached
is screenshotted and checked by axe-core (zero violations)."""

from __future__ import annotations

import asyncio
import re

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from app.demo import borough as b
from app.vocabulary import COMMUNICATION_CATEGORY, QA_OUTCOME, TASK_CODE
from app.web.desk import MASH_PAGE
from tests.e2e.server import TEST_CLOCK, RunningServer
from tests.web.browser import check_page
from tests.web.conftest import sign_in, wait_for_path
from tests.web.flows import (
    MASH_USER,
    OTHER_USER,
    SECOND_CHILD,
    SECOND_HV_USER,
    api,
    attend,
    attend_without_server,
    ed_token,
    escalate_at,
    later,
    referral_copy,
    restricted_flag,
    search,
    seed_server,
    session_cookie,
    tab_to,
    task,
    task_of,
)
from tests.web.provider import Provider

# A bound on waiting for the page to change by itself, not a timing assertion: the live update's
# latency is measured by bench/web_pages.py; here it must happen without a reload.
LIVE_BOUND = 10.0


def card(task_id: str) -> str:
    return f'[data-task="{task_id}"]'


def present(driver: webdriver.Chrome, selector: str) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, selector))


def switch_user(driver: webdriver.Chrome, server: RunningServer, sub: str) -> None:
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    sign_in(driver, server, sub)


def test_a_new_attendance_appears_on_her_open_page_without_a_reload(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    seed_server(web_server)
    sign_in(driver, web_server, "hana.visitor")
    WebDriverWait(driver, LIVE_BOUND).until(
        lambda d: d.find_element(By.ID, "notices").get_attribute("data-connected") == "true")
    driver.execute_script("window.stillTheSamePage = true")
    check_page(driver, f"inbox-{web_server.database}")
    task_id = attend(web_server)
    WebDriverWait(driver, LIVE_BOUND).until(lambda d: present(d, card(task_id)))
    assert driver.execute_script("return window.stillTheSamePage") is True  # no reload
    shown = driver.find_element(By.CSS_SELECTOR, card(task_id)).text
    assert "Casey Demo" in shown and "*** *** 0166" in shown and "999 000 0166" not in shown
    count = len(driver.find_elements(By.CSS_SELECTOR, "[data-task]"))
    assert driver.title == f"({count}) Your notices - SafeFlag"
    check_page(driver, f"inbox-live-{web_server.database}")


def test_after_a_server_restart_the_page_reconnects_and_catches_up(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    seed_server(web_server)
    sign_in(driver, web_server, "hana.visitor")
    WebDriverWait(driver, LIVE_BOUND).until(
        lambda d: d.find_element(By.ID, "notices").get_attribute("data-connected") == "true")
    driver.execute_script("window.stillTheSamePage = true")
    web_server.stop()  # the page's stream is cut
    encounter = asyncio.run(attend_without_server(web_server))  # committed while no server was there
    web_server.restart()
    task_id = task_of(web_server, encounter)
    WebDriverWait(driver, LIVE_BOUND + 30).until(lambda d: present(d, card(task_id)))  # reconnected, caught up
    assert driver.execute_script("return window.stillTheSamePage") is True


def test_she_acknowledges_by_keyboard_and_it_leaves_her_list_and_the_leads(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    seed_server(web_server)
    task_id = attend(web_server)
    sign_in(driver, web_server, "sam.lead")
    driver.get(web_server.base_url + "/app/lead")
    assert present(driver, card(task_id))
    check_page(driver, f"lead-desk-{web_server.database}")
    switch_user(driver, web_server, "hana.visitor")
    tab_to(driver, f'{card(task_id)} a')
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith(f"/app/notices/{task_id}"))
    assert "999 000 0166" in driver.find_element(By.TAG_NAME, "main").text  # the full number, once opened
    check_page(driver, f"notice-{web_server.database}")
    tab_to(driver, "textarea#note")
    driver.switch_to.active_element.send_keys("Spoke to mum; seen at clinic")
    tab_to(driver, "button#acknowledge")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    WebDriverWait(driver, 20).until(lambda d: present(d, "[data-acknowledged]"))
    assert driver.switch_to.active_element.get_attribute("data-acknowledged") == "true"  # focus on the message
    check_page(driver, f"notice-acknowledged-{web_server.database}")
    stored = task(web_server, task_id)
    assert (stored["status"], stored["statusReason"]) == ("completed", {"text": "Spoke to mum; seen at clinic"})
    driver.get(web_server.base_url + "/app")
    assert not present(driver, card(task_id))
    switch_user(driver, web_server, "sam.lead")
    driver.get(web_server.base_url + "/app/lead")
    assert not present(driver, card(task_id))


def test_an_overdue_notice_is_escalated_and_shows_on_the_leads_desk(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    seed_server(web_server)
    task_id = attend(web_server)
    assert asyncio.run(escalate_at(web_server, later(30))) >= 1
    assert task(web_server, task_id)["owner"] == {"reference": b.LEAD}
    sign_in(driver, web_server, "sam.lead")
    driver.get(web_server.base_url + "/app/lead")
    escalated = driver.find_element(By.CSS_SELECTOR, "[data-overdue]").text
    assert "Casey Demo" in escalated and "(escalated)" in escalated
    assert present(driver, f'[data-overdue] a[href="/app/notices/{task_id}"]')
    check_page(driver, f"lead-desk-escalated-{web_server.database}")
    driver.get(web_server.base_url + "/app/lead/report?month=2026-03")  # the month of the server's clock
    assert driver.find_element(By.TAG_NAME, "h1").text == "Governance report"
    assert driver.title.startswith("Governance report, March 2026")
    chart = driver.find_element(By.CSS_SELECTOR, "table.report-chart")
    assert chart.find_element(By.TAG_NAME, "caption").text == "Counts for March 2026"  # UK form, not 2026-03
    assert len(chart.find_elements(By.CSS_SELECTOR, "svg.report-bar rect")) >= 1
    check_page(driver, f"lead-report-{web_server.database}")


def test_the_lead_passes_an_escalated_notice_to_a_health_visitor_by_keyboard(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    """The lead opens an escalated notice from her desk's overdue list and passes it on, keyboard only:
    any colleague of her team (herself included) may take it; the Task's owner changes, and the notice
    is on that health visitor's list."""
    provider.add_user("harriet.second", SECOND_HV_USER)
    seed_server(web_server)
    task_id = attend(web_server)
    assert asyncio.run(escalate_at(web_server, later(30))) >= 1
    version = task(web_server, task_id)["meta"]["versionId"]
    sign_in(driver, web_server, "sam.lead")
    driver.get(web_server.base_url + "/app/lead")
    tab_to(driver, f'[data-overdue] a[href="/app/notices/{task_id}"]')
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith(f"/app/notices/{task_id}"))
    options = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "select#owner option")]
    assert options == ["Hana Visitor", "Harriet Second", "Sam Lead"]  # the team, herself included
    check_page(driver, f"lead-notice-pass-on-{web_server.database}")
    tab_to(driver, "select#owner")
    driver.switch_to.active_element.send_keys("Harr")  # a select chooses by typing, as a person does
    assert driver.switch_to.active_element.get_attribute("value") == "PractitionerRole/demo-hv2"
    tab_to(driver, "button#pass-on")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for_path(driver, "/app/lead")
    stored = task(web_server, task_id)
    assert stored["owner"] == {"reference": "PractitionerRole/demo-hv2"}
    assert int(stored["meta"]["versionId"]) == int(version) + 1
    check_page(driver, f"lead-desk-passed-on-{web_server.database}")
    switch_user(driver, web_server, "harriet.second")
    assert present(driver, card(task_id))


def test_her_overdue_list_shows_a_notice_past_its_due_time_by_keyboard(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    """A notice whose due time has passed (moved back through the API, as the clock passing it would) is on
    her overdue list, reached from her home page by keyboard, with its due time in UK form."""
    seed_server(web_server)
    task_id = attend(web_server)
    stored = task(web_server, task_id)
    stored["restriction"]["period"]["end"] = "2026-03-04T09:00:00Z"  # an hour before the server's clock began
    with api(web_server) as admin:
        r = admin.put(f"/Task/{task_id}", json=stored)
        assert r.status_code == 200, r.text
    sign_in(driver, web_server, "hana.visitor")
    tab_to(driver, 'a[href="/app/notices/overdue"]')
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for_path(driver, "/app/notices/overdue")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Your overdue notices"
    shown = driver.find_element(By.CSS_SELECTOR, card(task_id)).text
    assert "Casey Demo" in shown and "4 March 2026, 09:00 GMT" in shown and "2026-03-04" not in shown
    check_page(driver, f"overdue-{web_server.database}")


def test_an_unrouted_attendance_shows_on_the_leads_desk(driver: webdriver.Chrome, web_server: RunningServer) -> None:
    """An attendance of a child no record matches, with no duty team to fall back on, is routed to nobody:
    the lead's desk lists it under unrouted attendances, masked, owned by nobody."""
    seed_server(web_server)
    with api(web_server) as admin:
        assert admin.delete(f"/{b.DUTY}").status_code == 204  # no duty team: routed nowhere
    try:
        with api(web_server, ed_token(web_server)) as ed:
            r = ed.post("/Encounter", json={**b.attendance(TEST_CLOCK.isoformat()), "subject": {
                "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000182"}}})
            assert r.status_code == 201, r.text
    finally:
        seed_server(web_server)  # the duty team back for the other tests
    sign_in(driver, web_server, "sam.lead")
    driver.get(web_server.base_url + "/app/lead#unrouted")
    rows = driver.find_element(By.ID, "unrouted").find_element(By.XPATH, "following-sibling::*[1]").text
    assert "Child not matched to a record" in rows and "*** *** 0182" in rows and "9990000182" not in rows
    check_page(driver, f"lead-desk-unrouted-{web_server.database}")


def test_a_restricted_record_is_withheld_with_its_notice(driver: webdriver.Chrome, web_server: RunningServer) -> None:
    seed_server(web_server)
    restricted_flag(web_server, SECOND_CHILD)
    task_id = attend(web_server, SECOND_CHILD)
    sign_in(driver, web_server, "hana.visitor")
    driver.get(f"{web_server.base_url}/app/notices/{task_id}")
    main = driver.find_element(By.TAG_NAME, "main").text
    assert "Restricted records about the patient(s) of this search were withheld" in main
    assert "Exploitation risk" not in main
    check_page(driver, f"notice-withheld-{web_server.database}")
    switch_user(driver, web_server, "sam.lead")
    driver.get(f"{web_server.base_url}/app/notices/{task_id}")
    assert "Exploitation risk" in driver.find_element(By.TAG_NAME, "main").text


def test_another_organisation_cannot_open_a_notice_by_url(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    seed_server(web_server)
    provider.add_user("olive.other", OTHER_USER)
    task_id = attend(web_server)
    sign_in(driver, web_server, "olive.other")
    driver.get(f"{web_server.base_url}/app/notices/{task_id}")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Page not found"
    check_page(driver, f"notice-not-found-{web_server.database}")
    answer = httpx.get(f"{web_server.base_url}/app/notices/{task_id}", cookies=session_cookie(driver))
    assert answer.status_code == 404
    assert "Casey" not in answer.text and "0166" not in answer.text


def test_a_forged_form_post_is_refused_and_changes_nothing(
    driver: webdriver.Chrome, web_server: RunningServer
) -> None:
    seed_server(web_server)
    task_id = attend(web_server)
    sign_in(driver, web_server, "hana.visitor")
    version = task(web_server, task_id)["meta"]["versionId"]
    cookies = session_cookie(driver)
    forged = httpx.post(f"{web_server.base_url}/app/notices/{task_id}/acknowledge", cookies=cookies,
                        data={"version": version, "note": "forged"})
    wrong = httpx.post(f"{web_server.base_url}/app/notices/{task_id}/acknowledge", cookies=cookies,
                       data={"version": version, "note": "forged", "csrf_token": "not-the-token"})
    assert (forged.status_code, wrong.status_code) == (403, 403)
    assert task(web_server, task_id)["status"] == "requested"


def test_the_mash_practitioner_sees_the_referral_copies_addressed_to_her_authority(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    seed_server(web_server)
    provider.add_user("mia.mash", MASH_USER)
    sign_in(driver, web_server, "mia.mash")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Multi-agency safeguarding hub"
    check_page(driver, f"mash-{web_server.database}")


def plan_read_in_ed(web_server: RunningServer, provider: Provider) -> None:
    """The MASH's practitioner and borough, the MASH's own plan flag on the child, and an ED clinician
    reading it in unscheduled care: one access notification addressed to the MASH."""
    provider.add_user("mia.mash", MASH_USER)
    seed_server(web_server)
    with api(web_server) as admin:
        r = admin.post("/Flag", json={**b.plan_flag(TEST_CLOCK.date()), "author": {"reference": b.MASH}})
        assert r.status_code in (201, 409), r.text  # 409: already there from an earlier test on this server
    with api(web_server, ed_token(web_server)) as ed:
        assert ed.get("/Flag", params={"patient": b.CHILD}).status_code == 200


def test_the_mash_practitioner_sees_who_looked_at_a_childs_plan_by_name_and_uk_time(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    """An ED clinician reads the MASH's plan flag in unscheduled care; the MASH page lists that access with
    the child, the ED by name and the London time, and no reference or ISO time anywhere on the page."""
    plan_read_in_ed(web_server, provider)
    sign_in(driver, web_server, "mia.mash")
    rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table.nhsuk-table tbody tr")]
    assert rows and all(row.startswith("4 March 2026, ") and " GMT Casey Demo Demo General Hospital Emergency "
                        "Department Safeguarding flags owned by Demo Borough MASH were viewed" in row for row in rows)
    source = driver.page_source
    assert not re.search(r"\b(?:Organization|PractitionerRole|Flag|Patient)/|\d{4}-\d{2}-\d{2}T", source)
    check_page(driver, f"mash-accesses-{web_server.database}")


def test_the_mash_practitioner_pages_to_older_access_notifications(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    """More access notifications than a page holds: the newest page links to the older ones (the NHS.UK
    pagination), the older page back to the newer; both pass axe."""
    plan_read_in_ed(web_server, provider)
    with api(web_server) as admin:  # as many again as a page holds, and one: copies of the first one
        category = f"{COMMUNICATION_CATEGORY}|access-notification"
        first = admin.get("/Communication", params={"category": category}).json()["entry"][0]["resource"]
        for n in range(MASH_PAGE + 1):
            copy = {k: v for k, v in first.items() if k not in ("id", "meta")}
            copy["identifier"] = [{**i, "value": f"{i['value']}|paged-{n}"} for i in first["identifier"]]
            assert admin.post("/Communication", json=copy).status_code == 201
    sign_in(driver, web_server, "mia.mash")
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.nhsuk-table tbody tr")) == MASH_PAGE
    check_page(driver, f"mash-paged-{web_server.database}")
    driver.find_element(By.CSS_SELECTOR, 'nav[aria-label="Access notifications pages"] a[rel="next"]').click()
    wait_for_path(driver, "/app/mash")
    assert driver.find_element(By.ID, "accesses").text == "Who looked at a child's plan: page 2"
    assert driver.find_elements(By.CSS_SELECTOR, 'nav[aria-label="Access notifications pages"] a[rel="prev"]')
    check_page(driver, f"mash-paged-older-{web_server.database}")


def test_she_passes_a_notice_to_a_colleague_by_keyboard_and_it_moves_to_their_list(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    provider.add_user("harriet.second", SECOND_HV_USER)
    seed_server(web_server)
    sign_in(driver, web_server, "hana.visitor")
    task_id = attend(web_server)
    driver.get(f"{web_server.base_url}/app/notices/{task_id}")
    options = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "select#owner option")]
    assert options == ["Harriet Second", "Sam Lead"]  # her team, herself left out
    check_page(driver, f"notice-pass-on-{web_server.database}")
    tab_to(driver, "select#owner")
    assert driver.switch_to.active_element.get_attribute("value") == "PractitionerRole/demo-hv2"
    tab_to(driver, "button#pass-on")
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for_path(driver, "/app")
    assert not present(driver, card(task_id))
    assert task(web_server, task_id)["owner"] == {"reference": "PractitionerRole/demo-hv2"}
    switch_user(driver, web_server, "harriet.second")
    assert present(driver, card(task_id))
    check_page(driver, f"inbox-passed-on-{web_server.database}")


def test_mash_replies_to_a_referral_copy_and_the_lead_reviews_it_in_the_browser(
    driver: webdriver.Chrome, web_server: RunningServer, provider: Provider
) -> None:
    provider.add_user("mia.mash", MASH_USER)
    seed_server(web_server)
    referral, document = referral_copy(web_server)
    sign_in(driver, web_server, "mia.mash")
    form = f'form[action="/app/mash/reply/{referral}"]'
    card_text = driver.find_element(By.CSS_SELECTOR, form).find_element(By.XPATH, "ancestor::div[1]").text
    # the sender's role is not hers to read: the organisation that holds the copy, by name, in UK time
    assert "Casey Demo: 4 March 2026, 10:00 GMT\nFrom Demo 0-19 Service" in card_text
    assert "PractitionerRole/" not in driver.page_source and "Organization/" not in driver.page_source
    driver.find_element(By.CSS_SELECTOR, f"{form} textarea").send_keys("Strategy meeting held; child in need plan")
    driver.find_element(By.CSS_SELECTOR, f"{form} button").click()
    wait_for_path(driver, "/app/mash")
    assert driver.find_element(By.CSS_SELECTOR, f'[data-replied="{referral}"]').text == (
        "Outcome sent Strategy meeting held; child in need plan")
    check_page(driver, f"mash-replied-{web_server.database}")
    [reply] = [c for c in search(web_server, "Communication", _count="200",
                                 category=f"{COMMUNICATION_CATEGORY}|referral-outcome")
               if c["inResponseTo"] == [{"reference": f"Communication/{referral}"}]]
    assert (reply["status"], reply["payload"], reply["subject"], reply["recipient"], reply["sender"]) == (
        "completed", [{"contentString": "Strategy meeting held; child in need plan"}], {"reference": b.CHILD},
        [{"reference": b.HV}], {"reference": b.MASH})
    switch_user(driver, web_server, "sam.lead")
    driver.get(web_server.base_url + "/app/lead#quality")
    review = f'form[action="/app/lead/review/{document}"]'
    assert driver.find_element(By.CSS_SELECTOR, f"{review} legend").text.startswith(
        "Referral to Demo Borough MASH by Hana Visitor")  # a name, not PractitionerRole/demo-hv
    driver.find_element(By.CSS_SELECTOR, f'{review} label[for="o-{document}-incomplete-information"]').click()
    driver.find_element(By.CSS_SELECTOR, f"{review} textarea").send_keys("No chronology attached")
    check_page(driver, f"lead-review-{web_server.database}")
    driver.find_element(By.CSS_SELECTOR, f"{review} button").click()
    # the page was already at /app/lead#quality: wait for the answer's page, where the copy is reviewed
    WebDriverWait(driver, 20).until(lambda d: not present(d, review))  # reviewed: out of the queue
    assert driver.current_url.endswith("/app/lead#quality")
    [qa] = search(web_server, "Task", focus=f"DocumentReference/{document}", code=f"{TASK_CODE}|referral-qa")
    assert (qa["status"], qa["owner"], qa["for"], qa["note"], qa["output"][0]["valueCodeableConcept"]) == (
        "completed", {"reference": b.LEAD}, {"reference": b.CHILD}, [{"text": "No chronology attached"}],
        {"coding": [{"system": QA_OUTCOME, "code": "incomplete-information"}]})

"""The session in a real browser against a real server and provider: an account without a SafeFlag role
is refused, the idle timeout ends a session, sign-out ends it for good, a forged form is refused, and
every page carries the Content-Security-Policy and no inline script. Sign-in, sign-out, timeouts and
refusals are audited."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from app.web.headers import CSP
from app.web.session import COOKIE
from tests.e2e.server import RunningServer, start_server
from tests.support.postgres import free_port
from tests.web.browser import check_page, console_errors, identifiers_in_urls
from tests.web.conftest import (
    audit_events,
    change_pending_login,
    idle_for,
    pending_logins,
    session_cookie,
    session_rows,
    sign_in,
    wait_for_path,
)
from tests.web.provider import CLIENT_ID, Provider, provider_login

DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOGIN, LOGOUT = f"{DCM}|110122", f"{DCM}|110123"


def _signed_in_page(server: RunningServer, cookie: str, path: str = "/app") -> httpx.Response:
    return httpx.get(server.base_url + path, cookies={COOKIE: cookie}, follow_redirects=False, timeout=30)


def test_an_account_without_a_role_is_refused(driver: webdriver.Chrome, web_server: RunningServer) -> None:
    sign_in(driver, web_server, "no.role", expect="/app/auth/callback")
    assert driver.find_element(By.TAG_NAME, "h1").text == "You cannot use SafeFlag with this account"
    assert "Your account has no SafeFlag role" in driver.find_element(By.TAG_NAME, "main").text
    assert driver.get_cookie(COOKIE) is None  # no session of any kind is left behind
    assert ".nhsuk-header__account" not in driver.page_source
    check_page(driver, f"refused-{web_server.database}")
    driver.get(web_server.base_url + "/app")
    assert driver.current_url == web_server.base_url + "/app/sign-in"
    [refused] = audit_events(web_server, subtype=LOGIN, altid="no.role")
    assert refused["outcome"] == "4"
    assert refused["outcomeDesc"] == "sign-in refused: no SafeFlag role for this account"
    assert refused["agent"][0]["who"] == {"identifier": {"system": refused["agent"][0]["who"]["identifier"]["system"],
                                                         "value": "no.role"}}
    assert refused["type"]["code"] == "110114"


async def test_a_sign_in_the_provider_denies_signs_nobody_in_with_a_clear_page(
        driver: webdriver.Chrome, web_server: RunningServer) -> None:
    """The person denies the sign-in on the provider's page: the provider answers the callback with
    `error=access_denied` and the sign-in's own state; she sees why, nobody is signed in, the sign-in under
    way is gone and the refusal is audited."""
    refused = len(audit_events(web_server, subtype=LOGIN, outcome="4"))
    driver.get(web_server.base_url + "/app/sign-in")
    driver.find_element(By.LINK_TEXT, "Sign in").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "button[value=deny]"))
    [cookie] = [c["value"] for c in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"] if c["name"] == COOKIE]
    driver.find_element(By.CSS_SELECTOR, "button[value=deny]").click()
    wait_for_path(driver, "/app/auth/callback")
    assert set(httpx.URL(driver.current_url).params.keys()) == {"error", "error_description", "state"}
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign-in failed"
    assert "The identity provider did not sign you in." in driver.find_element(By.TAG_NAME, "main").text
    check_page(driver, f"sign-in-denied-{web_server.database}")
    assert driver.get_cookie(COOKIE) is None
    assert hashlib.sha256(cookie.encode()).hexdigest() not in await session_rows(web_server)
    events = audit_events(web_server, subtype=LOGIN, outcome="4")
    assert len(events) == refused + 1
    assert (events[0]["type"]["code"], events[0]["outcomeDesc"], events[0]["agent"][0]["who"]) == (
        "110114", "sign-in refused by the identity provider: access_denied", {"display": "unauthenticated"})
    driver.get(web_server.base_url + "/app")
    assert driver.current_url == web_server.base_url + "/app/sign-in"


@pytest.mark.parametrize("params", [{"state": "forged", "code": "stolen"}, {"state": "forged", "error": "access_denied"},
                                    {"error": "access_denied"}], ids=["code", "denial", "denial-without-state"])
async def test_a_callback_without_a_sign_in_under_way_signs_nobody_in(web_server: RunningServer,
                                                                       params: dict[str, str]) -> None:
    """An answer that is not to this browser's sign-in (no sign-in under way, or another state) is not
    trusted to say anything, a denial included: back to the sign-in page, nothing recorded."""
    before = await session_rows(web_server)
    refused = len(audit_events(web_server, subtype=LOGIN, outcome="4"))
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(web_server.base_url + "/app/auth/callback", params=params)
    assert (answer.status_code, answer.headers["location"]) == (303, "/app/sign-in")
    assert "set-cookie" not in answer.headers
    assert await session_rows(web_server) == before
    assert len(audit_events(web_server, subtype=LOGIN, outcome="4")) == refused


def test_sign_in_is_audited_and_the_session_is_http_only(driver: webdriver.Chrome, web_server: RunningServer) -> None:
    before = len(audit_events(web_server, subtype=LOGIN, altid="sam.lead"))
    sign_in(driver, web_server, "sam.lead")
    cookie = driver.get_cookie(COOKIE)
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["secure"]) == (True, "Lax", "/app", False)
    events = audit_events(web_server, subtype=LOGIN, altid="sam.lead")
    assert len(events) == before + 1
    event = events[0]
    assert event["outcome"] == "0"
    assert event["agent"][0]["who"]["reference"] == "PractitionerRole/demo-lead"
    assert event["agent"][0]["role"][0]["coding"][0]["code"] == "safeguarding-lead"
    assert event["agent"][1]["who"] == {"reference": "Organization/demo-0-19"}


async def test_the_idle_timeout_ends_a_session(driver: webdriver.Chrome, web_server: RunningServer) -> None:
    sign_in(driver, web_server, "hana.visitor")
    cookie = session_cookie(driver)
    await idle_for(web_server, cookie, timedelta(minutes=14))  # 14 minutes unused: still signed in
    driver.get(web_server.base_url + "/app")
    assert driver.current_url == web_server.base_url + "/app"
    # the page's live list catches up once on connecting (a use of the session): answered before the clock moves
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "notices").get_attribute("data-refreshed"))
    await idle_for(web_server, cookie, timedelta(minutes=15, seconds=1))  # over 15 minutes: signed out
    failed = len(audit_events(web_server, subtype=LOGIN, outcome="4"))
    driver.get(web_server.base_url + "/app")
    assert driver.current_url == web_server.base_url + "/app/sign-in?timed-out=1"
    assert "You were signed out because you had not used SafeFlag for 15 minutes." in driver.page_source
    check_page(driver, f"timed-out-{web_server.database}")
    assert hashlib.sha256(cookie.encode()).hexdigest() not in await session_rows(web_server)
    answer = _signed_in_page(web_server, cookie)
    assert (answer.status_code, answer.headers["location"]) == (303, "/app/sign-in")
    timed_out = [e for e in audit_events(web_server, subtype=LOGOUT, altid="hana.visitor")
                 if e["outcomeDesc"] == "session ended after its idle timeout"]
    assert timed_out and timed_out[0]["outcome"] == "0"
    # the ended session's cookie was cleared with the redirect: the sign-in page saw no cookie (a timeout
    # is not a failed attempt); only the test's own replay above is one
    assert len(audit_events(web_server, subtype=LOGIN, outcome="4")) == failed + 1


async def test_sign_out_ends_the_session_here_and_at_the_provider(driver: webdriver.Chrome, web_server: RunningServer,
                                                                   provider: Provider) -> None:
    """Sign-out ends SafeFlag's session and, by RP-initiated logout (the ID token posted to the provider's
    end_session_endpoint as the hint), the provider's own: the provider sees its own ID token for this
    account and client, ends its session, and sends the browser back to the signed-out page."""
    sign_in(driver, web_server, "sam.lead")  # a second session, signed out over HTTP below
    second = session_cookie(driver)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', _signed_in_page(web_server, second).text)[1]  # type: ignore[index]
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    sign_in(driver, web_server, "hana.visitor")
    assert "hana.visitor" in provider.sessions()
    logouts = len(provider.logouts())
    cookie = session_cookie(driver)
    assert _signed_in_page(web_server, cookie).status_code == 200
    signed_out = len(audit_events(web_server, subtype=LOGOUT, altid="hana.visitor"))
    driver.find_element(By.CSS_SELECTOR, ".nhsuk-header__account-button").click()
    # the signing-out page posts on to the provider by itself; the provider asks the person to confirm
    WebDriverWait(driver, 20).until(lambda d: d.current_url.startswith(provider.issuer + "/oauth2/end_session"))
    assert "id_token_hint" not in driver.current_url  # posted, never in a URL
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_path(driver, "/app/signed-out")
    assert provider.logouts()[logouts:] == [{
        "sub": "hana.visitor", "aud": [CLIENT_ID], "client_id": CLIENT_ID,
        "post_logout_redirect_uri": web_server.base_url + "/app/signed-out"}]
    assert "hana.visitor" not in provider.sessions()
    # the signing-out page (left at once for the provider) allows its one form to post there, and no more
    async with httpx.AsyncClient(timeout=30, cookies={COOKIE: second}) as http:
        signing_out = await http.post(web_server.base_url + "/app/sign-out", data={"csrf_token": csrf})
    assert signing_out.status_code == 200 and "Signing you out" in signing_out.text
    assert signing_out.headers["content-security-policy"] == CSP.replace(
        "form-action 'self'", f"form-action 'self' {provider.issuer}")
    assert f'<form method="post" action="{provider.issuer}/oauth2/end_session" data-auto-submit>' in signing_out.text
    assert driver.find_element(By.TAG_NAME, "h1").text == "You have signed out"
    check_page(driver, f"signed-out-{web_server.database}")
    assert driver.get_cookie(COOKIE) is None
    # the old cookie, replayed, signs nobody in: the server no longer has the session. Each replay is a
    # failed attempt, audited (outcome 4), and the answer clears the dead cookie
    assert hashlib.sha256(cookie.encode()).hexdigest() not in await session_rows(web_server)
    failed = len(audit_events(web_server, subtype=LOGIN, outcome="4"))
    for path in ("/app", "/app/events"):
        answer = _signed_in_page(web_server, cookie, path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/app/sign-in")
        assert answer.headers["set-cookie"].startswith(f'{COOKIE}=""; ') and "Max-Age=0" in answer.headers["set-cookie"]
    driver.add_cookie({"name": COOKIE, "value": cookie, "path": "/app"})
    driver.get(web_server.base_url + "/app")
    assert driver.current_url == web_server.base_url + "/app/sign-in"
    assert driver.get_cookie(COOKIE) is None  # cleared: the sign-in page did not count it again
    attempts = audit_events(web_server, subtype=LOGIN, outcome="4")
    assert [e["outcomeDesc"] for e in attempts[:len(attempts) - failed]] == [
        f"no session for the session cookie presented: GET {path}" for path in ("/app", "/app/events", "/app")]
    assert all((e["type"]["code"], e["subtype"][0]["code"], e["agent"][0]["who"]) == (
                   "110114", "110122", {"display": "unauthenticated"})
               for e in attempts[:3])
    events = audit_events(web_server, subtype=LOGOUT, altid="hana.visitor")
    assert len(events) == signed_out + 1 and events[0]["outcomeDesc"] == "signed out"


@pytest.mark.parametrize("verifier", [None, "a-verifier-that-made-no-challenge-0123456789abcdefghijk"],
                         ids=["no-verifier", "wrong-verifier"])
async def test_a_code_exchanged_without_its_pkce_verifier_signs_nobody_in(
        driver: webdriver.Chrome, web_server: RunningServer, verifier: str | None) -> None:
    """The provider holds the code to its S256 challenge: the server's exchange without the verifier, or
    with another one, is refused there, and the person sees a clear page; nobody is signed in and the
    failure is audited."""
    refused = len(audit_events(web_server, subtype=LOGIN, outcome="4"))
    driver.get(web_server.base_url + "/app/sign-in")
    driver.find_element(By.LINK_TEXT, "Sign in").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=sub]"))
    [cookie] = [c["value"] for c in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"] if c["name"] == COOKIE]
    await change_pending_login(web_server, cookie, verifier=verifier)
    provider_login(driver, "hana.visitor")
    wait_for_path(driver, "/app/auth/callback")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign-in failed"
    assert ("The identity provider's answer could not be verified, so you have not been signed in."
            in driver.find_element(By.TAG_NAME, "main").text)
    check_page(driver, f"sign-in-failed-{web_server.database}")
    assert driver.get_cookie(COOKIE) is None
    assert hashlib.sha256(cookie.encode()).hexdigest() not in await session_rows(web_server)
    events = audit_events(web_server, subtype=LOGIN, outcome="4")
    assert len(events) == refused + 1
    assert events[0]["outcome"] == "4" and events[0]["type"]["code"] == "110114"
    assert events[0]["outcomeDesc"] == ("the identity provider refused the code exchange (400): invalid_grant: "
                                        "code_verifier is missing or does not match the code_challenge")


def test_the_provider_refuses_an_authorization_request_without_pkce(provider: Provider) -> None:
    """What the server's own request is held to: the provider answers a request without an S256 challenge
    with 400 invalid_request, so a server that stopped sending one could sign nobody in."""
    base = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": "http://127.0.0.1/app/auth/callback",
            "scope": "openid", "state": "s", "nonce": "n"}
    for extra in ({}, {"code_challenge": "x" * 43, "code_challenge_method": "plain"}):
        answer = httpx.get(provider.issuer + "/oauth2/authorize", params={**base, **extra}, timeout=10)
        assert answer.status_code == 400 and "PKCE is required" in answer.text, extra
    ok = httpx.get(provider.issuer + "/oauth2/authorize", timeout=10,
                   params={**base, "code_challenge": "x" * 43, "code_challenge_method": "S256"})
    assert ok.status_code == 200


def test_a_forged_sign_out_is_refused_and_changes_nothing(driver: webdriver.Chrome, web_server: RunningServer,
                                                          tmp_path: Path) -> None:
    """A page on another origin (same site: 127.0.0.1, so the Lax cookie goes along) posts SafeFlag's
    sign-out form without the session's token: 403, and the session still works."""
    sign_in(driver, web_server, "hana.visitor")
    cookie = session_cookie(driver)
    forged = tmp_path / "forged.html"
    forged.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>Win a prize</title></head><body><main>'
        f'<form method="post" action="{web_server.base_url}/app/sign-out">'
        '<input type="hidden" name="csrf_token" value="guessed"><button type="submit">Claim</button></form>'
        "</main></body></html>")
    driver.get(forged.as_uri())
    driver.find_element(By.TAG_NAME, "button").click()
    wait_for_path(driver, "/app/sign-out")
    assert driver.find_element(By.TAG_NAME, "h1").text == "This request was refused"
    check_page(driver, f"csrf-refused-{web_server.database}")
    answer = httpx.post(web_server.base_url + "/app/sign-out", cookies={COOKIE: cookie}, data={}, timeout=30)
    assert answer.status_code == 403  # no token at all
    assert "This form could not be accepted" in answer.text
    assert _signed_in_page(web_server, cookie).status_code == 200  # still signed in: nothing changed
    # both refusals are audited as refused operations of the session's user (outcome 4), as /fhir audits one
    # (the forged page's post came without the cookie: its refusal names nobody)
    refused = [e for e in audit_events(web_server, outcome="4") if e["outcomeDesc"].startswith("form refused")]
    assert [e["outcomeDesc"] for e in refused[:2]] == [
        "form refused: it did not carry the session's CSRF token: POST /app/sign-out"] * 2
    assert [(e["type"]["code"], e["subtype"][0]["code"]) for e in refused[:2]] == [("rest", "operation")] * 2
    assert (refused[0]["agent"][0]["who"]["reference"], refused[0]["agent"][0]["altId"]) == (
        "PractitionerRole/demo-hv", "hana.visitor")
    assert refused[1]["agent"][0]["who"] == {"display": "unauthenticated"}
    driver.get(web_server.base_url + "/app")
    assert driver.current_url == web_server.base_url + "/app"


def test_every_page_has_the_csp_and_no_inline_script(driver: webdriver.Chrome, web_server: RunningServer) -> None:
    sign_in(driver, web_server, "hana.visitor")
    cookie = session_cookie(driver)
    pages = ["/app", "/app/sign-in", "/app/signed-out", "/app/no-such-page", "/app/static/app.js",
             "/app/static/vendor/nhsuk-frontend.min.css"]
    for path in pages:
        answer = _signed_in_page(web_server, cookie, path)
        assert answer.headers["content-security-policy"] == CSP, path
        assert "'unsafe-inline'" not in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        if answer.headers.get("content-type", "").startswith("text/html"):
            assert "<script>" not in answer.text and "<script " not in answer.text.replace(
                '<script type="module" src="/app/static/app.js"></script>', ""), path
    assert CSP == ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
                   "connect-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    missing = _signed_in_page(web_server, cookie, "/app/no-such-page")
    assert missing.status_code == 404 and "Page not found" in missing.text
    driver.get(web_server.base_url + "/app/no-such-page")
    check_page(driver, f"not-found-{web_server.database}")


async def test_the_authorization_request_uses_pkce_state_and_nonce(web_server: RunningServer) -> None:
    """What the browser is sent to the provider with, and what the server keeps for the callback."""
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(web_server.base_url + "/app/sign-in/start")
    assert answer.status_code == 302
    location = httpx.URL(answer.headers["location"])
    query = dict(location.params)
    assert location.path == "/oauth2/authorize"
    assert query.keys() == {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                            "code_challenge", "code_challenge_method"}
    assert (query["response_type"], query["client_id"], query["redirect_uri"], query["scope"],
            query["code_challenge_method"]) == ("code", CLIENT_ID, web_server.base_url + "/app/auth/callback",
                                                "openid profile email", "S256")
    cookie = answer.cookies[COOKIE]
    [login] = [row for key, row in (await pending_logins(web_server)).items()
               if key == hashlib.sha256(cookie.encode()).hexdigest()]
    assert (login["state"], login["nonce"]) == (query["state"], query["nonce"])
    challenge = base64.urlsafe_b64encode(hashlib.sha256(login["verifier"].encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == challenge and len(login["verifier"]) >= 43


async def test_a_proxy_on_the_same_machine_that_terminates_tls_makes_the_cookie_secure(
        web_server: RunningServer) -> None:
    """Behind a reverse proxy that terminates TLS: the server trusts `X-Forwarded-Proto` from 127.0.0.1
    (uvicorn's default, `FORWARDED_ALLOW_IPS` for another address), so the session cookie is Secure there,
    and not on plain HTTP."""
    async with httpx.AsyncClient(timeout=30) as http:
        plain = await http.get(web_server.base_url + "/app/sign-in/start")
        tls = await http.get(web_server.base_url + "/app/sign-in/start", headers={"X-Forwarded-Proto": "https"})
    assert plain.status_code == tls.status_code == 302
    assert [part.strip() for part in plain.headers["set-cookie"].split(";")][1:] == [
        "HttpOnly", "Path=/app", "SameSite=lax"]
    assert [part.strip() for part in tls.headers["set-cookie"].split(";")][1:] == [
        "HttpOnly", "Path=/app", "SameSite=lax", "Secure"]


def test_the_url_check_finds_an_nhs_number_or_an_identifier_in_any_address(driver: webdriver.Chrome,
                                                                             tmp_path: Path) -> None:
    """What every page's check (tests/web/browser.py) looks for, shown to find each kind of leak."""
    page = tmp_path / "leaky.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>Leaks</title></head><body><main>'
        '<a href="/app/notices/9990001235">bare</a><a href="/app/x?nhs=999%20000%201235">grouped</a>'
        '<form action="/app/y?identifier=x"></form><a href="/app/notices/9990001234">not a valid number</a>'
        '<a href="/app/notices/0a9c6f0e-1b2d-4e5f-8a9b-19990001235">inside a longer one</a></main></body></html>')
    driver.get(page.as_uri())
    assert [url.rsplit("/", 1)[-1] for url in identifiers_in_urls(driver)] == [
        "9990001235", "x?nhs=999%20000%201235", "y?identifier=x"]


def test_without_javascript_sign_out_goes_on_to_the_provider_by_keyboard(
        driver: webdriver.Chrome, web_server: RunningServer, provider: Provider) -> None:
    """The signing-out page works without its script: it stays, says what happened, passes axe, and its
    Continue button (by keyboard) posts on to the provider's sign-out, which ends the provider's session."""
    sign_in(driver, web_server, "sam.lead")
    logouts = len(provider.logouts())
    console_errors(driver)  # what the provider's pages left in the console
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/app/static/continue.js"]})
    try:
        driver.find_element(By.CSS_SELECTOR, ".nhsuk-header__account-button").click()
        wait_for_path(driver, "/app/sign-out")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Signing you out"
        check_page(driver, f"signing-out-{web_server.database}")
        assert driver.current_url == web_server.base_url + "/app/sign-out"  # still here: nothing posted it on
        assert driver.get_cookie(COOKIE) is None  # SafeFlag's own session has already ended
        button = driver.find_element(By.XPATH, "//main//button[normalize-space()='Continue']")
        driver.execute_script("arguments[0].focus()", button)
        button.send_keys(Keys.ENTER)
        WebDriverWait(driver, 20).until(lambda d: d.current_url.startswith(provider.issuer + "/oauth2/end_session"))
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        driver.execute_cdp_cmd("Network.disable", {})
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for_path(driver, "/app/signed-out")
    assert [logout["sub"] for logout in provider.logouts()[logouts:]] == ["sam.lead"]


def test_a_provider_that_cannot_be_reached_gets_a_clear_page(driver: webdriver.Chrome) -> None:
    """The configured provider is down (nothing listens at its issuer): pressing Sign in gets "Sign-in is
    unavailable" (503), no session, and the server keeps serving."""
    issuer = f"http://127.0.0.1:{free_port()}"
    server = start_server(extra_env={"SAFEFLAG_WEB_OIDC_ISSUER": issuer, "SAFEFLAG_WEB_OIDC_CLIENT_ID": CLIENT_ID,
                                     "SAFEFLAG_NO_DISPATCHER": "1"})
    try:
        assert f"  web app       : {server.base_url}/app   (sign in with {issuer})\n" in server.stdout()
        driver.get(server.base_url + "/app/sign-in")
        driver.find_element(By.LINK_TEXT, "Sign in").click()
        wait_for_path(driver, "/app/sign-in/start")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Sign-in is unavailable"
        assert ("The identity provider cannot be reached. Try again in a few minutes."
                in driver.find_element(By.TAG_NAME, "main").text)
        check_page(driver, "sign-in-unavailable")
        assert driver.get_cookie(COOKIE) is None
        answer = httpx.get(server.base_url + "/app/sign-in/start", timeout=30, follow_redirects=False)
        assert answer.status_code == 503 and "set-cookie" not in answer.headers
        assert httpx.get(server.base_url + "/readyz", timeout=30).status_code == 200
    finally:
        server.stop()
        server.cleanup()

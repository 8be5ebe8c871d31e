"""The browser tests' OpenID Connect provider process: `oidc-provider-mock` held to what NHS CIS2 and
Microsoft Entra ID hold a web client to, run as `python -m tests.web.oidc_provider --port N`.

The mock alone accepts a code exchange without PKCE and does not keep a session of its own, so no test
could fail if SafeFlag dropped its code_verifier or never ended the provider's session. Here:

- **PKCE S256 is required** (RFC 7636): an authorization request without `code_challenge`, or with a
  method other than `S256`, is refused on the provider's page (400 `invalid_request`); the token request
  must carry the `code_verifier` whose S256 is the code's challenge, else 400 `invalid_grant` and the code
  is spent (as section 4.6 has the server do).
- **A provider session**: issuing a code signs the account in at the provider. RP-initiated logout
  (`end_session_endpoint`, OpenID Connect RP-Initiated Logout 1.0) ends it when its `id_token_hint` is an
  ID token this provider signed; a hint that does not verify is refused (400). On confirming, the browser
  goes to the `post_logout_redirect_uri`.
- **A denial keeps the request's `state`**: the mock redirects `error=access_denied` without it, where
  RFC 6749 (section 4.1.2.1) has the provider return the client's `state` with an error too, as CIS2 and
  Entra ID do; here it is added, so the client can tell its own sign-in's denial from a forged one.
- `GET /test/sessions`: the subjects signed in at the provider; `GET /test/logouts`: each completed logout
  (the hint's subject and audience, the redirect). For the tests to check what the provider saw.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import flask
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from oidc_provider_mock import app as mock_app

CHALLENGES: dict[str, str] = {}  # authorization code -> its S256 code_challenge
SESSIONS: set[str] = set()  # subjects signed in at the provider
LOGOUTS: list[dict[str, Any]] = []  # completed RP-initiated logouts
PENDING: dict[str, Any] = {}  # the logout asked for, until the person confirms it


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _refused(error: str, description: str, *, page: bool) -> flask.Response:
    if page:
        body = f"<!DOCTYPE html><title>{error}</title><h1>{error}</h1><p>{description}</p>"
        return flask.Response(body, status=400, mimetype="text/html")
    return flask.make_response(flask.jsonify({"error": error, "error_description": description}), 400)


def _hint_claims(hint: str) -> dict[str, Any] | None:
    keys = KeySet.import_key_set({"keys": [flask.g.oidc_provider_mock_storage.jwk.as_dict()]})
    try:
        return dict(jwt.decode(hint, keys, algorithms=["RS256"]).claims)
    except (JoseError, ValueError):
        return None


def build() -> flask.Flask:
    app = mock_app(require_nonce=True, issue_refresh_token=False, access_token_max_age=timedelta(hours=1))

    @app.before_request
    def hold_to_pkce_and_logout() -> flask.typing.ResponseReturnValue | None:
        request = flask.request
        if request.path == "/oauth2/authorize":
            if not request.args.get("code_challenge") or request.args.get("code_challenge_method") != "S256":
                return _refused("invalid_request", "PKCE is required: code_challenge with code_challenge_method "
                                "S256", page=True)
        elif request.path == "/oauth2/token" and request.form.get("grant_type") == "authorization_code":
            challenge = CHALLENGES.pop(request.form.get("code", ""), None)
            verifier = request.form.get("code_verifier")
            if challenge is not None and (not verifier or s256(verifier) != challenge):
                flask.g.oidc_provider_mock_storage.remove_authorization_code(request.form["code"])
                return _refused("invalid_grant", "code_verifier is missing or does not match the code_challenge",
                                page=False)
        elif request.path == "/oauth2/end_session":
            hint = request.values.get("id_token_hint")
            claims = _hint_claims(hint) if hint else None
            if hint and claims is None:
                return _refused("invalid_request", "id_token_hint is not an ID token of this provider", page=True)
            PENDING.clear()
            PENDING.update(sub=(claims or {}).get("sub"), aud=(claims or {}).get("aud"),
                           post_logout_redirect_uri=request.values.get("post_logout_redirect_uri"),
                           client_id=request.values.get("client_id"))
        elif request.path == "/oauth2/end_session/confirm" and PENDING:
            SESSIONS.discard(PENDING.get("sub") or "")
            LOGOUTS.append(dict(PENDING))
            PENDING.clear()
        return None

    @app.after_request
    def remember_the_code(response: flask.Response) -> flask.Response:
        request = flask.request
        if request.path == "/oauth2/authorize" and request.method == "POST" and response.status_code == 302:
            location = urlparse(response.headers.get("Location", ""))
            query = parse_qs(location.query)
            code = query.get("code")
            if "error" in query and "state" not in query and request.args.get("state"):
                query["state"] = [request.args["state"]]
                response.headers["Location"] = location._replace(query=urlencode(query, doseq=True)).geturl()
            if code:
                CHALLENGES[code[0]] = request.args["code_challenge"]
                SESSIONS.add(request.form.get("sub", ""))
        return response

    @app.get("/test/sessions")
    def sessions() -> flask.Response:
        return flask.jsonify(sorted(SESSIONS))

    @app.get("/test/logouts")
    def logouts() -> flask.Response:
        return flask.jsonify(LOGOUTS)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback, for the tests only
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(build(), interface="wsgi", host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()

"""Browser security headers on every /app response (pages, redirects, static files, errors).

A Content-Security-Policy with no inline script (`script-src 'self'`, no `unsafe-inline`, no nonce: the
pages load only app/web/static/app.js and the NHS.UK frontend module) and nothing from other origins;
forms post only to SafeFlag; the pages cannot be framed. The service-wide headers (nosniff,
`Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`, `Cache-Control: no-store`) come from
app/security/middleware.py, which keeps a CSP a response already has. The one exception: the signing-out
page posts to the identity provider's own sign-out, so its `form-action` also names that provider's origin
(`request.state.web_form_action`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
WEB_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)


def is_web(path: str) -> bool:
    return path == "/app" or path.startswith("/app/")


class WebHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_web(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
                headers.extend(WEB_HEADERS)
                also = scope.get("state", {}).get("web_form_action")
                if also:
                    csp = CSP.replace("form-action 'self'", f"form-action 'self' {also}")
                    headers = [(k, csp.encode() if k == b"content-security-policy" else v) for k, v in headers]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)

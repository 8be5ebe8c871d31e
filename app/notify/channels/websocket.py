"""websocket channel (Backport IG, https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets):
a client gets a short-lived token from `$get-ws-binding-token`, opens the socket and sends
`bind-with-token <token>`; the server answers with a handshake Bundle and then sends notifications in
event-number order. Sockets live in the API process that accepted them; this registry is that
process's view of who is bound to which subscription."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...


@dataclass
class _Binding:
    sub_ids: set[str]
    expires: datetime


@dataclass
class WebSocketRegistry:
    now: Callable[[], datetime]  # the injected clock (app/clock.py): a token's expiry is shown to its client
    token_ttl: float = 60.0
    _tokens: dict[str, _Binding] = field(default_factory=dict)
    _sockets: dict[str, set[Socket]] = field(default_factory=lambda: defaultdict(set))
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def issue_token(self, sub_ids: set[str]) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        expires = self.now() + timedelta(seconds=self.token_ttl)
        self._tokens[token] = _Binding(set(sub_ids), expires)
        return token, expires

    def redeem(self, token: str) -> set[str] | None:
        binding = self._tokens.pop(token, None)
        if binding is None or binding.expires < self.now():
            return None
        return binding.sub_ids

    def bind(self, sub_id: str, socket: Socket) -> None:
        self._sockets[sub_id].add(socket)

    def unbind(self, socket: Socket) -> None:
        for sockets in self._sockets.values():
            sockets.discard(socket)

    def bound(self, sub_id: str) -> list[Socket]:
        return list(self._sockets.get(sub_id, ()))

    def bound_subscriptions(self) -> set[str]:
        return {s for s, socks in self._sockets.items() if socks}

    async def send(self, sub_id: str, text: str) -> bool:
        """Send to every socket bound to the subscription; True if at least one took it."""
        delivered = False
        for sock in self.bound(sub_id):
            try:
                await sock.send_text(text)
                delivered = True
            except Exception:  # noqa: BLE001 - a dead socket is unbound, not an error
                self.unbind(sock)
        return delivered

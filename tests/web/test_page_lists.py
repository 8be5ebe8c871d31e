"""The full lists of the pages in process, on both databases: her overdue list holds exactly her notices
past their due time (the others are not on it, and her home page tags the overdue one), in UK form."""

from __future__ import annotations

import re
from typing import Any

import httpx

from app.context import AppContext
from tests.web.pages_data import attend, ed
from tests.web.test_live_list import cards, hana

__all__ = ["hana"]  # the signed-in health visitor (a fixture)


async def test_her_overdue_list_holds_only_the_notices_past_their_due_time(
    hana: httpx.AsyncClient, client: httpx.AsyncClient, clean_ctx: AppContext, auth: Any
) -> None:
    for start in ("2026-01-05T08:30:00Z", "2026-01-05T09:30:00Z", "2026-01-05T10:30:00Z"):
        await attend(client, ed(auth), start)
    home = await hana.get("/app")
    first, second, third = cards(home.text)
    assert "Overdue</strong>" not in home.text
    task = (await client.get(f"/fhir/Task/{second}")).json()
    task["restriction"]["period"]["end"] = "2025-12-01T12:00:00Z"  # long past at the clock's 2026 instants
    assert (await client.put(f"/fhir/Task/{second}", json=task)).status_code == 200

    overdue = await hana.get("/app/notices/overdue")
    assert overdue.status_code == 200 and cards(overdue.text) == [second]
    assert "1 December 2025, 12:00 GMT" in overdue.text
    home = await hana.get("/app")
    assert cards(home.text) == [first, second, third]
    tagged = re.findall(r'data-task="([^"]+)"(?:(?!data-task=).)*?Overdue</strong>', home.text, re.DOTALL)
    assert tagged == [second]

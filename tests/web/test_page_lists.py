"""The full lists of the pages in process, on both databases: her overdue list holds exactly her notices
past their due time (the others are not on it, and her home page tags the overdue one), in UK form; the
lead's desk reads no owners for its unrouted notices."""

from __future__ import annotations

import re
from typing import Any

import httpx

from app.context import AppContext
from app.demo import borough as b
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM
from tests.conftest import StepClock
from tests.web.pages_data import attend, ed, seed
from tests.web.test_dev_sign_in import _app_client, _csrf
from tests.web.test_live_list import cards, hana, statements

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


async def test_the_leads_desk_reads_no_owners_for_its_unrouted_notices(
    client: httpx.AsyncClient, clean_ctx: AppContext, clock: StepClock, auth: Any
) -> None:
    """Unrouted notices have no owner to read: the desk's statements are the same with unrouted notices on
    it as without (the list's includes run only for the notices found; none of them reads owners)."""
    await seed(client, clock.now().date())
    await attend(client, ed(auth), "2026-01-05T08:30:00Z")
    assert (await client.delete(f"/fhir/{b.DUTY}")).status_code == 204  # no duty team: routed nowhere
    async with _app_client(clean_ctx, web_dev_sign_in=True) as lead:
        page = await lead.get("/app/sign-in")
        signed = await lead.post("/app/dev-sign-in", data={"csrf_token": _csrf(page.text), "person": "lead"})
        assert signed.status_code == 303
        counts = []
        for start in (None, "2026-01-05T09:30:00Z", "2026-01-05T10:30:00Z"):
            if start:
                r = await client.post("/fhir/Encounter", headers=ed(auth), json={
                    **b.attendance(start),
                    "subject": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": "9990000182"}}})
                assert r.status_code == 201, r.text
            desk, seen = await statements(clean_ctx, lambda: lead.get("/app/lead"))
            unrouted = desk.text.partition('id="unrouted"')[2].partition('id="quality"')[0]
            assert desk.status_code == 200 and len(cards(unrouted)) == len(counts)
            counts.append(len(seen))
    # with unrouted notices: their search's includes (the notices, the child, the attendances, the
    # senders, the attendances' providers), and no read of owners
    assert counts[2] == counts[1] == counts[0] + 5, counts

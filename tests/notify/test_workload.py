"""Open and overdue acknowledgement counts per team in `/metrics` (contract section 5), both databases."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.notify.ed_data import (
    born,
    borough,
    by_nhs,
    by_ref,
    care_team,
    child,
    encounter,
    post,
    practitioner_role,
    put,
    search,
)


def _gauges(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels["organization"]): s.value
        for family in text_string_to_metric_families(text) if family.name.startswith("safeguarding_tasks_")
        for s in family.samples
    }


async def test_open_and_overdue_per_team(api: httpx.AsyncClient) -> None:
    await borough(api)
    await put(api, "PractitionerRole", "sn-1", practitioner_role("Practitioner/sn", "Organization/zero19",
                                                                 "school-nurse"))
    await put(api, "Patient", "c1", child("9990000018", born(2)))
    await put(api, "Patient", "c2", child("9990000026", born(9)))
    await put(api, "CareTeam", "ct1", care_team("Patient/c1", ("health-visitor", "PractitionerRole/hv-1")))
    await put(api, "CareTeam", "ct2", care_team("Patient/c2", ("school-nurse", "Practitioner/sn")))
    for subject in (by_ref("c1"), by_ref("c1"), by_ref("c2"), by_nhs("9990000034")):  # the last: duty team
        await post(api, encounter(subject, "Organization/ed"))
    assert _gauges((await api.get("/metrics")).text) == {
        ("safeguarding_tasks_open", "Organization/duty"): 1.0,
        ("safeguarding_tasks_open", "Organization/zero19"): 3.0,
        ("safeguarding_tasks_overdue", "Organization/duty"): 0.0,
        ("safeguarding_tasks_overdue", "Organization/zero19"): 0.0,
    }
    hv_tasks = await search(api, "Task", owner="PractitionerRole/hv-1", status="requested")
    assert len(hv_tasks) == 2
    late = {**hv_tasks[0], "restriction": {"period": {"end": "2026-01-02T09:00:00Z"}}}
    assert (await api.put(f"/fhir/Task/{late['id']}", json=late)).status_code == 200
    done = {**hv_tasks[1], "status": "completed"}
    assert (await api.put(f"/fhir/Task/{done['id']}", json=done)).status_code == 200
    # a Task nobody could be found for (no duty team any more, child unknown)
    assert (await api.delete("/fhir/Organization/duty")).status_code == 204
    await post(api, encounter(by_nhs("9990000042"), "Organization/ed"))
    assert _gauges((await api.get("/metrics")).text) == {
        ("safeguarding_tasks_open", "Organization/duty"): 1.0,
        ("safeguarding_tasks_open", "Organization/zero19"): 2.0,
        ("safeguarding_tasks_open", "unassigned"): 1.0,
        ("safeguarding_tasks_overdue", "Organization/duty"): 0.0,
        ("safeguarding_tasks_overdue", "Organization/zero19"): 1.0,
        ("safeguarding_tasks_overdue", "unassigned"): 0.0,
    }
    count = await api.get("/fhir/Task", params={"owner": "PractitionerRole/hv-1", "status": "requested",
                                                "_summary": "count"})
    assert count.json()["total"] == 1

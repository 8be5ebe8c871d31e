"""Seed the two servers under test over their HTTP APIs, and describe what they hold (the seed file
the load generators read).

SafeFlag gets Organizations, Patients (test-range NHS numbers) and active Flags through its real
API; the ceiling gets the very same Flag bodies. Search patients carry 1-3 active flags each (the
expected match count is checked on every search); create patients carry none before the run, and
each create request uses a fresh (patient, category, author) triple, so no request may be a
legitimate duplicate-flag 409 (docs/api/flags.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from bench.workloads import CATEGORY_CODES, flag_body, nhs_numbers, organization_body, patient_body


@dataclass(frozen=True)
class Sizes:
    search_patients: int = 200
    create_patients: int = 2000
    seed_orgs: int = 5
    create_orgs: int = 10


class Seeder:
    def __init__(self, base: str, token: str | None, concurrency: int = 8) -> None:
        headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0)
        self.sem = asyncio.Semaphore(concurrency)

    async def create(self, body: dict[str, Any]) -> str:
        async with self.sem:
            r = await self.client.post(f"/fhir/{body['resourceType']}", json=body)
        if r.status_code != 201:
            raise RuntimeError(
                f"seeding {body['resourceType']} at {self.client.base_url}: {r.status_code} {r.text[:500]}"
            )
        return str(r.json()["id"])

    async def create_all(self, bodies: list[dict[str, Any]]) -> list[str]:
        return list(await asyncio.gather(*(self.create(b) for b in bodies)))

    async def close(self) -> None:
        await self.client.aclose()


def search_flags(patients: list[tuple[str, str]], orgs: list[str]) -> list[dict[str, Any]]:
    """1-3 active flags per search patient, distinct categories, authors spread over the seed orgs."""
    out = []
    for i, (pid, nhs) in enumerate(patients):
        for j in range(1 + i % 3):
            out.append(
                flag_body(pid, nhs, orgs[(i + j) % len(orgs)], CATEGORY_CODES[(i + j) % len(CATEGORY_CODES)])
            )
    return out


async def seed_safeflag(base: str, sizes: Sizes, token: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Seed one SafeFlag server; returns its seed description and the search Flags' bodies."""
    sf = Seeder(base, token)
    try:
        org_ids = await sf.create_all(
            [organization_body(i) for i in range(sizes.seed_orgs + sizes.create_orgs)]
        )
        seed_orgs, create_orgs = org_ids[: sizes.seed_orgs], org_ids[sizes.seed_orgs :]
        numbers = nhs_numbers(0, sizes.search_patients + sizes.create_patients)
        pids = await sf.create_all([patient_body(n, i) for i, n in enumerate(numbers)])
        patients = list(zip(pids, numbers, strict=True))
        search_patients, create_patients = (
            patients[: sizes.search_patients],
            patients[sizes.search_patients :],
        )
        flags = search_flags(search_patients, seed_orgs)
        flag_ids = await sf.create_all(flags)
    finally:
        await sf.close()
    expected = [[nhs, 1 + i % 3] for i, (_pid, nhs) in enumerate(search_patients)]
    common = {"search": expected, "create_patients": create_patients, "create_orgs": create_orgs}
    return {"base": base, "flag_ids": flag_ids, "require_include": True, **common}, flags


async def seed_pair(
    safeflag_base: str, ceiling_base: str, sizes: Sizes, token: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seed SafeFlag and the ceiling with the same Flags; return their seed descriptions."""
    sf_seed, flags = await seed_safeflag(safeflag_base, sizes, token)
    ceil = Seeder(ceiling_base, None)
    try:
        ceil_flag_ids = await ceil.create_all(flags)
    finally:
        await ceil.close()
    return sf_seed, {**sf_seed, "base": ceiling_base, "flag_ids": ceil_flag_ids, "require_include": False}

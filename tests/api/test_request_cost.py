"""What one request leaves behind, counted exactly: a unit of work is freed by reference counting when it
ends (no reference cycle keeps its session, repository, guard and principal for the cycle collector)."""

from __future__ import annotations

import gc
import weakref

from app.context import AppContext
from app.security.principal import Principal
from app.security.scopes import ScopeSet

ADMIN = Principal(sub="cost-admin", role="admin", scopes=ScopeSet.parse("user/*.cruds"),
                  issuer="http://127.0.0.1:8080/auth", org="Organization/cost")
PATIENT = {"resourceType": "Patient", "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                      "value": "9990000018"}], "birthDate": "2020-01-02"}


async def test_a_unit_of_work_is_freed_without_the_cycle_collector(clean_ctx: AppContext) -> None:
    gc.collect()
    gc.disable()
    try:
        async with clean_ctx.unit_of_work(principal=ADMIN) as svc:
            created = await svc.create("Patient", PATIENT)
            assert created.stored is not None
            await svc.read("Patient", created.stored.id)
            await svc.search("Patient", [("identifier", "https://fhir.nhs.uk/Id/nhs-number|9990000018")])
            refs = [weakref.ref(o) for o in (svc, svc.session, svc.repo, svc.guard)]
        del svc, created
        assert [r() for r in refs] == [None, None, None, None]
    finally:
        gc.enable()

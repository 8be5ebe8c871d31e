"""Flag lifecycle rules over HTTP on both databases (contract sections 4-5, FGM-IS / CP-IS): exact
OperationOutcomes, and nothing stored or changed by a refused write."""

from __future__ import annotations

from typing import Any

import httpx

from tests.safeguarding.support import (
    CATEGORY,
    CHILD,
    CHILD_NHS,
    CONTRACT_CODES,
    LA,
    MOTHER,
    MOTHER_NHS,
    NHS,
    SNOMED,
    ZERO19,
    adult,
    borough,
    by_nhs,
    count,
    example,
    flag,
    ids,
    oo,
    patient,
    post,
    put,
    reason,
    rule,
)

DISPLAYS = {"child-protection-plan": "Child protection plan", "exploitation-risk": "Exploitation risk"}
IMMUTABLE = ("cannot change once a Flag is raised: only status, period.end and the status-reason extension may "
             "(raise a new flag instead)")
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def subject_for(category: str) -> str:
    return MOTHER if category == "unborn-child-protection-plan" else CHILD


def extras_for(category: str) -> dict[str, Any]:
    return {"extension": [adult()]} if category == "significant-adult" else {}


def duplicate(existing: str, category: str = "child-protection-plan", child: str = CHILD, author: str = LA
              ) -> dict[str, Any]:
    return oo({"severity": "error", "code": "duplicate", "expression": ["Flag.category", "Flag.subject", "Flag.author"],
               "diagnostics": f"SF-0239: Flag/{existing} is already an active {category} flag for {child} by "
                              f"{author}: end it, or use conditional create (If-None-Exist) to get the existing one"})


async def test_each_category_is_raised_with_the_code_of_the_contract_table(client: httpx.AsyncClient) -> None:
    await borough(client)
    for category in CONTRACT_CODES:
        created = await post(client, flag(category, subject_for(category), **extras_for(category)))
        assert (created["status"], created["code"]) == ("active", flag(category, CHILD)["code"])
    assert await count(client, "Flag") == len(CONTRACT_CODES) == 11


async def test_category_and_code_must_go_together(client: httpx.AsyncClient) -> None:
    await borough(client)
    lac_code = {"coding": [{"system": SNOMED, "code": "764841000000100"}]}
    r = await client.post("/fhir/Flag", json=flag("child-protection-plan", CHILD, code=lac_code))
    assert (r.status_code, r.json()) == (422, oo(rule(
        "SF-0231: Flag.code of a child-protection-plan flag must be http://snomed.info/sct|342191000000101 "
        "'Child protection plan' (ConceptMap flag-category-to-code)", "Flag.code")))
    local = {"coding": [{"system": CATEGORY, "code": "not-brought"}]}
    r = await client.post("/fhir/Flag", json=flag("exploitation-risk", CHILD, code=local))
    assert (r.status_code, r.json()) == (422, oo(rule(
        f"SF-0231: Flag.code of a exploitation-risk flag must be {CATEGORY}|exploitation-risk 'Exploitation risk' "
        "(ConceptMap flag-category-to-code)", "Flag.code")))
    # every category refuses the code of the next one in the table (SNOMED CT and local codes alike)
    categories = list(CONTRACT_CODES)
    for category, other in zip(categories, categories[1:] + categories[:1], strict=True):
        wrong = flag(other, CHILD)["code"]
        r = await client.post("/fhir/Flag", json=flag(category, subject_for(category), code=wrong,
                                                      **extras_for(category)))
        issues = r.json()["issue"]
        assert (r.status_code, [(i["diagnostics"][:8], i["expression"]) for i in issues]) == (
            422, [("SF-0231:", ["Flag.code"])]), category
    assert await count(client, "Flag") == 0


async def test_flags_are_created_active_only(client: httpx.AsyncClient) -> None:
    await borough(client)
    for status in ("inactive", "entered-in-error"):
        body = flag("child-protection-plan", CHILD, status=status, extension=[reason("added-in-error")])
        expected = (422, oo(rule(
            f"SF-0230: A Flag is created with status 'active', not '{status}': raise it, then end it by a status "
            "change with a status-reason", "Flag.status")))
        r = await client.post("/fhir/Flag", json=body)
        assert (r.status_code, r.json()) == expected
        r = await client.put("/fhir/Flag/ended-at-birth", json={**body, "id": "ended-at-birth"})  # update-as-create
        assert (r.status_code, r.json()) == expected
    assert await count(client, "Flag") == 0


async def test_a_second_active_flag_of_the_same_category_subject_and_author_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    await borough(client)
    first = await post(client, flag("child-protection-plan", CHILD))
    for subject in (CHILD, by_nhs(CHILD_NHS)):  # by reference or by NHS number: the same child
        r = await client.post("/fhir/Flag", json=flag("child-protection-plan", subject))
        assert (r.status_code, r.json()) == (409, duplicate(first["id"]))
    r = await client.put("/fhir/Flag/again", json={**flag("child-protection-plan", CHILD), "id": "again"})
    assert (r.status_code, r.json()) == (409, duplicate(first["id"]))
    # conditional create answers with the existing flag instead
    criteria = f"patient:identifier={NHS}|{CHILD_NHS}&category={CATEGORY}|child-protection-plan&status=active"
    r = await client.post("/fhir/Flag", json=flag("child-protection-plan", CHILD), headers={"If-None-Exist": criteria})
    assert (r.status_code, r.json()["id"]) == (200, first["id"])
    # another author, another category, another subject: not duplicates
    await post(client, flag("child-protection-plan", CHILD, author=ZERO19))
    await post(client, flag("looked-after-child", CHILD))
    await post(client, flag("child-protection-plan", MOTHER))
    assert await count(client, "Flag") == 4
    # once the plan has ended a new one may be raised; bringing the old one back is then the duplicate
    ended = await client.put(f"/fhir/Flag/{first['id']}", json={**first, "status": "inactive", "extension": [reason()]})
    assert ended.status_code == 200, ended.text
    second = await post(client, flag("child-protection-plan", by_nhs(CHILD_NHS)))
    r = await client.put(f"/fhir/Flag/{first['id']}", json={**ended.json(), "status": "active"})
    assert (r.status_code, r.json()) == (409, duplicate(second["id"]))
    assert (await client.get(f"/fhir/Flag/{first['id']}")).json()["status"] == "inactive"


async def test_after_creation_only_status_period_end_and_the_reason_may_change(client: httpx.AsyncClient) -> None:
    await borough(client)
    created = await post(client, flag("child-protection-plan", CHILD))
    fid = created["id"]
    changed = {**created, "code": {**created["code"], "text": "CP plan"}, "period": {"start": "2025-12-01"},
               "author": {"reference": ZERO19}}
    r = await client.put(f"/fhir/Flag/{fid}", json=changed)
    assert (r.status_code, r.json()) == (422, oo(
        rule(f"SF-0237: Flag.author {IMMUTABLE}", "Flag.author"),
        rule(f"SF-0237: Flag.code {IMMUTABLE}", "Flag.code"),
        rule(f"SF-0237: Flag.period.start {IMMUTABLE}", "Flag.period.start"),
    ))
    r = await client.patch(f"/fhir/Flag/{fid}", headers=JSON_PATCH,
                           json=[{"op": "replace", "path": "/subject/reference", "value": MOTHER}])
    assert (r.status_code, r.json()) == (422, oo(rule(f"SF-0237: Flag.subject {IMMUTABLE}", "Flag.subject")))
    restricted = {**created, "meta": {"security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}}
    r = await client.put(f"/fhir/Flag/{fid}", json=restricted)
    assert (r.status_code, r.json()) == (422, oo(rule(f"SF-0237: Flag.meta.security {IMMUTABLE}",
                                                      "Flag.meta.security")))
    r = await client.patch(f"/fhir/Flag/{fid}", headers=JSON_PATCH,
                           json=[{"op": "replace", "path": "/status", "value": "inactive"}])
    assert (r.status_code, r.json()) == (422, oo(rule(
        "SF-0238: A Flag with status 'inactive' carries the status-reason extension "
        "(https://fhir.safeflag.example/StructureDefinition/status-reason) saying why it ended", "Flag.extension")))
    assert (await client.get(f"/fhir/Flag/{fid}")).json() == created  # nothing changed
    r = await client.patch(f"/fhir/Flag/{fid}", headers=JSON_PATCH, json=[
        {"op": "replace", "path": "/status", "value": "inactive"},
        {"op": "add", "path": "/period/end", "value": "2026-01-05"},
        {"op": "add", "path": "/extension", "value": [reason("plan-ended")]},
    ])
    assert (r.status_code, r.json()["meta"]["versionId"], r.json()["period"]) == (
        200, "2", {"start": "2026-01-01", "end": "2026-01-05"})
    ended = r.json()
    no_reason = {k: v for k, v in ended.items() if k != "extension"}
    r = await client.put(f"/fhir/Flag/{fid}", json={**no_reason, "status": "entered-in-error"})
    assert (r.status_code, r.json()) == (422, oo(rule(
        "SF-0238: A Flag with status 'entered-in-error' carries the status-reason extension "
        "(https://fhir.safeflag.example/StructureDefinition/status-reason) saying why it ended", "Flag.extension")))
    r = await client.put(f"/fhir/Flag/{fid}", json={**ended, "status": "entered-in-error",
                                                     "extension": [reason("added-in-error")]})
    assert (r.status_code, r.json()["meta"]["versionId"]) == (200, "3")
    # ended flags stay readable and searchable; they are never deleted
    assert await ids(client, "/fhir/Flag?patient=Patient/example-child&status=entered-in-error") == [
        ("match", "Flag", fid)]
    r = await client.delete(f"/fhir/Flag/{fid}")
    assert (r.status_code, r.json()) == (405, oo({"severity": "error", "code": "not-supported", "diagnostics":
                                                  "SF-0405: Flag resources are never deleted; change their status instead"}))


async def test_a_subject_given_by_nhs_number_must_resolve(client: httpx.AsyncClient) -> None:
    await borough(client)
    created = await post(client, flag("looked-after-child", by_nhs(CHILD_NHS)))
    assert created["subject"] == by_nhs(CHILD_NHS)  # stored as sent
    assert await ids(client, f"/fhir/Flag?patient:identifier={NHS}|{CHILD_NHS}") == [("match", "Flag", created["id"])]
    r = await client.post("/fhir/Flag", json=flag("child-protection-plan", by_nhs("9990000042")))
    assert (r.status_code, r.json()) == (422, oo(rule(
        "SF-0232: No single Patient with NHS number 9990000042 is known: create the Patient first, or reference "
        "it in Flag.subject.reference", "Flag.subject.identifier")))
    other = {"type": "Patient", "identifier": {"system": "https://example.org/mrn", "value": "M123"}}
    r = await client.post("/fhir/Flag", json=flag("child-protection-plan", other))
    assert (r.status_code, r.json()) == (422, oo(rule(
        f"SF-0232: A Flag's subject given without a reference must carry the child's NHS number ({NHS})",
        "Flag.subject.identifier")))
    # a Patient written earlier in the same transaction is found
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("new-child", "9990000042", "2024-06-01"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": flag("child-protection-plan", by_nhs("9990000042")), "request": {"method": "POST", "url": "Flag"}},
    ]}
    r = await client.post("/fhir", json=bundle)
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created", "201 Created"]
    assert await count(client, "Flag") == 2


async def test_a_refused_flag_fails_its_whole_transaction(client: httpx.AsyncClient) -> None:
    await borough(client)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient("new-child", "9990000042", "2024-06-01"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": flag("fgm", MOTHER), "request": {"method": "POST", "url": "Flag"}},
    ]}
    r = await client.post("/fhir", json=bundle)
    assert r.status_code == 422
    assert [i["diagnostics"][:8] for i in r.json()["issue"]] == ["SF-0234:"]
    assert (await count(client, "Patient"), await count(client, "Flag")) == (2, 0)


async def test_the_unborn_child_plan_is_recorded_under_the_mother(client: httpx.AsyncClient) -> None:
    await borough(client)
    plan = await put(client, example("example-unborn-child-protection-plan"))
    assert plan["subject"]["reference"] == MOTHER
    await put(client, patient("a-father", "9990000042", "1995-04-01", "male"))
    await put(client, patient("pregnant-16", "9990000050", "2009-10-01"))  # no gender recorded
    prefix = ("SF-0233: The subject of a flag of category unborn-child-protection-plan is the mother (the plan is "
              "recorded under her NHS number); this subject ")
    for subject, why in (("Patient/a-father", "is Patient/a-father, recorded as male"),
                         (CHILD, "is Patient/example-child, aged 2: too young to be the mother"),
                         ("Patient/nobody", "is not a Patient known to this server")):
        r = await client.post("/fhir/Flag", json=flag("unborn-child-protection-plan", subject))
        assert (r.status_code, r.json()) == (422, oo(rule(prefix + why, "Flag.subject"))), subject
    # by the mother's NHS number (another author: the plan above is the local authority's)
    await post(client, flag("unborn-child-protection-plan", by_nhs(MOTHER_NHS), author=ZERO19))
    await post(client, flag("unborn-child-protection-plan", "Patient/pregnant-16"))
    assert await count(client, "Flag") == 3


async def test_fgm_flags_are_for_children_under_18(client: httpx.AsyncClient) -> None:
    await borough(client)
    # the server's date is 2026-01-05: born 2008-01-05 is 18 today, born 2008-01-06 is still 17
    await put(client, patient("turns-18", "9990000042", "2008-01-05"))
    await put(client, patient("seventeen", "9990000050", "2008-01-06"))
    await put(client, patient("undated", "9990000069", None))
    await post(client, flag("fgm", CHILD))
    await post(client, flag("fgm", "Patient/seventeen"))
    prefix = "SF-0234: An fgm flag (FGM-IS) is for children under 18 only; this subject "
    for subject, why in (("Patient/turns-18", "is Patient/turns-18, aged 18"),
                         (MOTHER, "is Patient/example-mother, aged 27"),
                         ("Patient/undated", "is Patient/undated, who has no birth date, so their age cannot be checked"),
                         ("Patient/nobody", "is not a Patient known to this server, so their age cannot be checked")):
        r = await client.post("/fhir/Flag", json=flag("fgm", subject))
        assert (r.status_code, r.json()) == (422, oo(rule(prefix + why, "Flag.subject"))), subject
    assert await count(client, "Flag") == 2


async def test_a_significant_adult_flag_names_a_related_person_of_the_child(client: httpx.AsyncClient) -> None:
    await borough(client)
    assert await ids(client, "/fhir/RelatedPerson?patient=Patient/example-child") == [
        ("match", "RelatedPerson", "example-father")]
    created = await put(client, example("example-significant-adult"))
    assert created["extension"] == [adult("example-father")]
    cases = [
        (flag("significant-adult", CHILD, author=LA), rule(
            "SF-0235: A significant-adult flag names the adult: add the significant-adult extension "
            "(https://fhir.safeflag.example/StructureDefinition/significant-adult) referencing their RelatedPerson",
            "Flag.extension")),
        (flag("significant-adult", CHILD, author=LA, extension=[adult("nobody")]), rule(
            "SF-0235: The significant-adult extension must reference a RelatedPerson known to this server "
            "(RelatedPerson/nobody)", "Flag.extension[0].valueReference")),
        (flag("significant-adult", MOTHER, extension=[adult()]), rule(
            "SF-0235: RelatedPerson/example-father is a related person of Patient/example-child, not of the flag's "
            "subject Patient/example-mother", "Flag.extension[0].valueReference")),
        (flag("child-protection-plan", CHILD, extension=[reason(), adult()], status="active"), rule(
            "SF-0236: The significant-adult extension belongs on significant-adult flags, not on a "
            "child-protection-plan flag", "Flag.extension[1]")),
    ]
    for body, issue in cases:
        r = await client.post("/fhir/Flag", json=body)
        assert (r.status_code, r.json()) == (422, oo(issue)), body
    other = await put(client, {**example("example-father"), "id": "uncle", "identifier": [
        {"system": NHS, "value": "9990000042"}]})
    r = await client.put(f"/fhir/Flag/{created['id']}", json={**created, "extension": [adult(other["id"])]})
    assert (r.status_code, r.json()) == (422, oo(rule(f"SF-0237: Flag.extension {IMMUTABLE}", "Flag.extension")))
    assert await count(client, "Flag") == 1

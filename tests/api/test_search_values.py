"""Token, string and date search on both databases (https://hl7.org/fhir/R4/search.html#token,
#string, #date): every form, modifier and prefix, with exact result sets."""

from __future__ import annotations

import httpx

from tests.api.test_search_fixtures import NHS, create, end_flag, flag, ids, organization, patient, put

LA = "Organization/la"


async def _people(client: httpx.AsyncClient) -> dict[str, str]:
    await put(client, {**organization("Leeds City Council", "LA1"), "id": "la"})
    out = {}
    out["amy"] = (await create(client, patient("9990000018", "Smith", "Amy", active=True,
                                               telecom=[{"system": "phone", "value": "0113 496 0000"}],
                                               gender="female")))["id"]
    out["zoe"] = (await create(client, patient("9990000026", "Ngọc", "Zoë", birth="2019-07-01", active=False,
                                               gender="female",
                                               address=[{"line": ["1 Briggate"], "city": "Leeds",
                                                         "postalCode": "LS1 6HD"}])))["id"]
    out["ben"] = (await create(client, {**patient("9990000034", "SMITHSON", "Ben", birth="2021-11-30"),
                                        "identifier": [{"system": NHS, "value": "9990000034"},
                                                       {"value": "LOCAL-1"}]}))["id"]
    return out


async def test_token_forms(client: httpx.AsyncClient) -> None:
    p = await _people(client)
    assert await ids(client, f"/fhir/Patient?identifier={NHS}|9990000018") == [p["amy"]]
    assert await ids(client, "/fhir/Patient?identifier=9990000026") == [p["zoe"]]
    # `|code`: no system; `system|`: any code of the system
    assert await ids(client, "/fhir/Patient?identifier=|LOCAL-1") == [p["ben"]]
    assert await ids(client, "/fhir/Patient?identifier=|9990000018") == []
    assert await ids(client, f"/fhir/Patient?identifier={NHS}|&_sort=_id") == sorted(p.values())
    assert await ids(client, "/fhir/Patient?identifier=https://other|9990000018") == []
    # booleans, codes, ContactPoint (system as HAPI indexes it), OR within a value
    assert await ids(client, "/fhir/Patient?active=true") == [p["amy"]]
    assert await ids(client, "/fhir/Patient?active=false") == [p["zoe"]]
    assert await ids(client, "/fhir/Patient?gender=female") == [p["amy"], p["zoe"]]
    assert await ids(client, "/fhir/Patient?telecom=phone|0113 496 0000") == [p["amy"]]
    assert await ids(client, "/fhir/Patient?phone=0113 496 0000") == [p["amy"]]
    assert await ids(client, "/fhir/Patient?email=0113 496 0000") == []
    assert await ids(client, "/fhir/Patient?identifier=9990000018,9990000034") == [p["amy"], p["ben"]]


async def test_token_not_and_missing(client: httpx.AsyncClient) -> None:
    p = await _people(client)
    # :not matches resources without the value, including those with no value at all
    assert await ids(client, "/fhir/Patient?active:not=true") == [p["zoe"], p["ben"]]
    assert await ids(client, "/fhir/Patient?active:not=true,false") == [p["ben"]]
    assert await ids(client, "/fhir/Patient?active:missing=true") == [p["ben"]]
    assert await ids(client, "/fhir/Patient?active:missing=false") == [p["amy"], p["zoe"]]
    assert await ids(client, "/fhir/Patient?_id:not=" + p["amy"]) == [p["zoe"], p["ben"]]


async def test_codeable_concepts_and_codings(client: httpx.AsyncClient) -> None:
    pid = (await create(client, patient("9990000018")))["id"]
    await put(client, {**organization("Leeds City Council", "LA1"), "id": "la"})
    cp = await create(client, flag(f"Patient/{pid}", LA, "child-protection-plan"))
    fgm = await create(client, flag(f"Patient/{pid}", LA, "fgm"))
    cat = "https://fhir.safeflag.example/CodeSystem/safeguarding-flag-category"
    assert await ids(client, f"/fhir/Flag?category={cat}|fgm") == [fgm["id"]]
    assert await ids(client, "/fhir/Flag?category=child-protection-plan") == [cp["id"]]
    assert await ids(client, "/fhir/Flag?code=http://snomed.info/sct|342191000000101") == [cp["id"]]
    assert await ids(client, "/fhir/Flag?code:not=342191000000101") == [fgm["id"]]
    ended = await end_flag(client, fgm)
    assert await ids(client, "/fhir/Flag?status=active") == [cp["id"]]
    assert await ids(client, "/fhir/Flag?status=inactive") == [ended["id"]]
    assert await ids(client, "/fhir/Flag?status=active,inactive") == [cp["id"], fgm["id"]]
    assert await ids(client, "/fhir/Flag?status=active&category=fgm") == []


async def test_string_search(client: httpx.AsyncClient) -> None:
    p = await _people(client)
    # default: starts-with, case- and accent-insensitive, on any part of the name
    assert await ids(client, "/fhir/Patient?family=smith") == [p["amy"], p["ben"]]
    assert await ids(client, "/fhir/Patient?family=NGOC") == [p["zoe"]]
    assert await ids(client, "/fhir/Patient?name=zoe") == [p["zoe"]]
    assert await ids(client, "/fhir/Patient?given=be") == [p["ben"]]
    assert await ids(client, "/fhir/Patient?name=mith") == []
    # :exact is case- and accent-sensitive and whole-value; :contains matches inside
    assert await ids(client, "/fhir/Patient?family:exact=Smith") == [p["amy"]]
    assert await ids(client, "/fhir/Patient?family:exact=smith") == []
    assert await ids(client, "/fhir/Patient?family:exact=Ngọc") == [p["zoe"]]
    assert await ids(client, "/fhir/Patient?name:contains=MITH") == [p["amy"], p["ben"]]
    # Address parts; LIKE wildcards in the value are literal
    assert await ids(client, "/fhir/Patient?address=leeds") == [p["zoe"]]
    assert await ids(client, "/fhir/Patient?address=1 brig") == [p["zoe"]]
    assert await ids(client, "/fhir/Patient?address-postalcode=ls1") == [p["zoe"]]
    assert await ids(client, "/fhir/Patient?family=%25") == []
    assert await ids(client, "/fhir/Patient?family=_mith") == []
    assert await ids(client, "/fhir/Patient?family:missing=false&family=sm") == [p["amy"], p["ben"]]


async def test_date_prefixes_on_dates(client: httpx.AsyncClient) -> None:
    p = await _people(client)  # birthdates: amy 2020-02-03, zoe 2019-07-01, ben 2021-11-30
    cases = {
        "2020": [p["amy"]],
        "eq2020-02": [p["amy"]],
        "ne2020": [p["zoe"], p["ben"]],
        "gt2020-02-03": [p["ben"]],
        "ge2020-02-03": [p["amy"], p["ben"]],
        "lt2020-02-03": [p["zoe"]],
        "le2020-02-03": [p["amy"], p["zoe"]],
        "sa2020": [p["ben"]],
        "eb2020": [p["zoe"]],
        "ap2020-02-02": [p["amy"]],
        "gt2019-07-01T00:00:00Z": [p["amy"], p["zoe"], p["ben"]],
        "lt2019-07-01T00:00:00Z": [],
        "le2019-07-01T00:00:00Z": [],  # the day starts at, not before, that second
        "le2019-07-01T12:00:00Z": [p["zoe"]],
    }
    for value, expected in cases.items():
        assert await ids(client, f"/fhir/Patient?birthdate={value}") == expected, value
    assert await ids(client, "/fhir/Patient?birthdate=ge2019&birthdate=lt2021") == [p["amy"], p["zoe"]]
    assert await ids(client, "/fhir/Patient?birthdate=2019,2021") == [p["zoe"], p["ben"]]


async def test_periods_with_open_ends(client: httpx.AsyncClient) -> None:
    pid = (await create(client, patient("9990000018")))["id"]
    await put(client, {**organization("Leeds City Council", "LA1"), "id": "la"})
    open_ = await create(client, flag(f"Patient/{pid}", LA, "child-protection-plan", start="2026-01-01"))
    closed = await create(client, flag(f"Patient/{pid}", LA, "fgm", start="2025-06-01", end="2025-12-31"))
    cases = {
        "2026": [],  # an open period is not contained in any range
        "ge2026-01-01": [open_["id"]],
        "gt2026-06-01": [open_["id"]],
        "lt2026-01-01": [closed["id"]],
        "le2025-06-01": [],  # le: starts before the value, or lies within it
        "le2025-06-15": [closed["id"]],
        "eq2025": [closed["id"]],
        "sa2025-12-31": [open_["id"]],
        "eb2026-01-01": [closed["id"]],
        "ne2025": [open_["id"]],
        "ap2025-12-31": [open_["id"], closed["id"]],
    }
    for value, expected in cases.items():
        assert await ids(client, f"/fhir/Flag?date={value}") == expected, value


async def test_datetimes_instants_and_last_updated(client: httpx.AsyncClient) -> None:
    pid = (await create(client, patient("9990000018")))["id"]
    body = {"resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{pid}"}}
    early = await create(client, {**body, "sent": "2026-01-05T09:30:00+01:00"})  # 08:30Z
    late = await create(client, {**body, "sent": "2026-01-05T10:15:30.250Z"})
    none_ = await create(client, body)
    assert await ids(client, "/fhir/Communication?sent=2026-01-05") == [early["id"], late["id"]]
    assert await ids(client, "/fhir/Communication?sent=2026-01-05T08:30") == [early["id"]]
    assert await ids(client, "/fhir/Communication?sent=lt2026-01-05T09:00:00Z") == [early["id"]]
    assert await ids(client, "/fhir/Communication?sent=2026-01-05T10:15:30Z") == [late["id"]]
    assert await ids(client, "/fhir/Communication?sent=gt2026-01-05T10:15:30.25Z") == []
    assert await ids(client, "/fhir/Communication?sent:missing=true") == [none_["id"]]
    stamps = [r["meta"]["lastUpdated"] for r in (early, late, none_)]
    assert await ids(client, f"/fhir/Communication?_lastUpdated=ge{stamps[1]}") == [late["id"], none_["id"]]
    assert await ids(client, f"/fhir/Communication?_lastUpdated=lt{stamps[1]}") == [early["id"]]
    assert await ids(client, f"/fhir/Communication?_lastUpdated={stamps[2]}") == [none_["id"]]
    assert await ids(client, f"/fhir/Communication?_lastUpdated=ne{stamps[2]}") == [early["id"], late["id"]]
    assert await ids(client, "/fhir/Communication?_lastUpdated=2026") == [early["id"], late["id"], none_["id"]]
    assert await ids(client, "/fhir/Communication?_lastUpdated=gt2026-02") == []


async def test_meta_parameters(client: httpx.AsyncClient) -> None:
    pid = (await create(client, patient("9990000018")))["id"]
    await put(client, {**organization("Leeds City Council", "LA1"), "id": "la"})
    confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
    profile = "https://fhir.safeflag.example/StructureDefinition/safeguarding-flag"
    restricted = flag(f"Patient/{pid}", LA, "risk-to-others")
    restricted["meta"] = {"security": [{"system": confidentiality, "code": "R"}],
                          "tag": [{"system": "https://example.org/tags", "code": "imported"}],
                          "profile": [profile]}
    plain = await create(client, flag(f"Patient/{pid}", LA))
    labelled = await create(client, restricted)
    assert await ids(client, f"/fhir/Flag?_security={confidentiality}|R") == [labelled["id"]]
    assert await ids(client, "/fhir/Flag?_security:not=R") == [plain["id"]]
    assert await ids(client, "/fhir/Flag?_tag=imported") == [labelled["id"]]
    assert await ids(client, "/fhir/Flag?_tag:missing=true") == [plain["id"]]
    assert await ids(client, f"/fhir/Flag?_profile={profile}") == [labelled["id"]]
    assert await ids(client, f"/fhir/Flag?_id={plain['id']},{labelled['id']}&_sort=-_lastUpdated") == [
        labelled["id"], plain["id"]]

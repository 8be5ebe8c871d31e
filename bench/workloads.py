"""Benchmark data and workloads shared by the seeder, the load generator and the bulk loader.

Everything here is synthetic: NHS numbers come only from the 999 test range with a valid Modulus 11
check digit (https://www.datadictionary.nhs.uk/attributes/nhs_number.html), Flags follow docs/api/flags.md
(category from the SafeFlag CodeSystem plus HL7 `safety`, SNOMED CT code, subject by
reference *and* NHS-number identifier, author Organization, period).

A workload turns a request index `i` into one HTTP request and knows how to check its response, so
that the Python generator and the wrk script send the very same requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import quote

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM, is_valid

CANON = "https://fhir.safeflag.example"
CATEGORY_SYSTEM = f"{CANON}/CodeSystem/safeguarding-flag-category"
STATUS_REASON_URL = f"{CANON}/StructureDefinition/status-reason"
STATUS_REASON_SYSTEM = f"{CANON}/CodeSystem/status-reason"
ORG_ROLE_SYSTEM = f"{CANON}/CodeSystem/organization-role"
SNOMED = "http://snomed.info/sct"
HL7_FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"

# the flag categories (docs/api/codes.md): category -> (SNOMED CT code, display). Only the categories whose subject is the
# child itself and whose code is SNOMED CT (the unborn-child plan is raised on the mother).
CATEGORIES: dict[str, tuple[str, str]] = {
    "child-protection-plan": ("342191000000101", "Subject of child protection plan"),
    "looked-after-child": ("764841000000100", "Looked after child"),
    "fgm": ("902961000000107", "Family history of female genital mutilation"),
    "risk-to-self": ("886941000000103", "At risk of harm to self"),
    "risk-to-others": ("886951000000100", "At risk of harming others"),
    "risk-from-others": ("1064461000000103", "At risk of harm from others"),
}
CATEGORY_CODES = tuple(CATEGORIES)

WORKLOADS = ("create", "read", "search")


def iter_nhs_numbers() -> Iterator[str]:
    """Valid NHS numbers of the 999 test range in order: 999 + six digits + Modulus 11 check digit.

    Prefixes whose check digit would be 10 have no valid number and are skipped (~1 in 11), so the
    range holds ~909 k numbers, enough for the 100 k-patient load.
    """
    for k in range(1_000_000):
        prefix = f"999{k:06d}"
        check = (11 - sum(int(d) * w for d, w in zip(prefix, range(10, 1, -1), strict=True)) % 11) % 11
        if check != 10:
            yield prefix + str(check)


def nhs_numbers(start: int, count: int) -> list[str]:
    """`count` consecutive valid test-range NHS numbers, from the `start`-th one (0-based)."""
    out = list(islice(iter_nhs_numbers(), start, start + count))
    assert len(out) == count and all(is_valid(n) for n in out[:100])
    return out


def organization_body(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": f"BENCH{i:04d}"}],
        "active": True,
        "type": [{"coding": [{"system": ORG_ROLE_SYSTEM, "code": "local-authority-mash"}]}],
        "name": f"Bench Borough Council {i} Children's Services",
        "telecom": [{"system": "phone", "value": f"0207 000 {i:04d}", "use": "work"}],
    }


def patient_body(nhs: str, i: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}],
        "name": [{"family": f"Benchmark{i % 997}", "given": ["Alex"]}],
        "gender": ("female", "male")[i % 2],
        "birthDate": f"{2012 + i % 12}-{1 + i % 12:02d}-{1 + i % 28:02d}",
    }


def flag_body(
    patient_id: str, nhs: str, org_id: str, category: str, *, active: bool = True, start: str = "2026-01-05"
) -> dict[str, Any]:
    """A realistic safeguarding Flag (docs/api/flags.md)."""
    snomed, display = CATEGORIES[category]
    body: dict[str, Any] = {
        "resourceType": "Flag",
        "status": "active" if active else "inactive",
        "category": [
            {
                "coding": [
                    {"system": CATEGORY_SYSTEM, "code": category},
                    {"system": HL7_FLAG_CATEGORY, "code": "safety", "display": "Safety"},
                ]
            }
        ],
        "code": {"coding": [{"system": SNOMED, "code": snomed, "display": display}], "text": display},
        "subject": {
            "reference": f"Patient/{patient_id}",
            "identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs},
        },
        "period": {"start": start},
        "author": {"reference": f"Organization/{org_id}", "display": "Children's Services"},
    }
    if not active:
        # an ended flag carries the status-reason extension and an end date (docs/api/flags.md)
        body["period"]["end"] = "2026-03-01"
        body["extension"] = [
            {
                "url": STATUS_REASON_URL,
                "valueCodeableConcept": {"coding": [{"system": STATUS_REASON_SYSTEM, "code": "plan-ended"}]},
            }
        ]
    return body


def cpis_path(nhs: str, param: str = "patient:identifier") -> str:
    """The CP-IS-style check (docs/api/flags.md; `param="patient.identifier"`: the chained form, which
    HAPI FHIR also understands; bench/hapi_compare.py)."""
    ident = quote(f"{NHS_NUMBER_SYSTEM}|{nhs}", safe="")
    return f"/fhir/Flag?{param}={ident}&status=active&_include=Flag:author"


@dataclass
class Request:
    method: str
    path: str
    body: dict[str, Any] | None
    expect: Any  # what `check` compares against


class Workload:
    """Request i of a workload, from a seed description written by bench/run.py."""

    def __init__(self, name: str, seed: dict[str, Any]) -> None:
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")
        self.name = name
        self.seed = seed
        self.require_include = bool(seed.get("require_include"))

    def capacity(self) -> int | None:
        """How many distinct create requests exist (a 2nd active flag with the same category,
        subject and author is a 409 (docs/api/flags.md), so creates never repeat a triple)."""
        if self.name != "create":
            return None
        return len(self.seed["create_patients"]) * len(CATEGORY_CODES) * len(self.seed["create_orgs"])

    def request(self, i: int) -> Request:
        if self.name == "read":
            fid = self.seed["flag_ids"][i % len(self.seed["flag_ids"])]
            return Request("GET", f"/fhir/Flag/{fid}", None, fid)
        if self.name == "search":
            nhs, expected = self.seed["search"][i % len(self.seed["search"])]
            return Request("GET", cpis_path(nhs, self.seed.get("cpis_param", "patient:identifier")), None,
                           (nhs, expected))
        patients, orgs = self.seed["create_patients"], self.seed["create_orgs"]
        pid, nhs = patients[i % len(patients)]
        rest = i // len(patients)
        category = CATEGORY_CODES[rest % len(CATEGORY_CODES)]
        org = orgs[(rest // len(CATEGORY_CODES)) % len(orgs)]
        return Request("POST", "/fhir/Flag", flag_body(pid, nhs, org, category), None)

    def check(self, req: Request, status: int, headers: Any, body: Any) -> str | None:
        """None when the response is right, else a short reason."""
        if self.name == "create":
            if status != 201:
                return f"status {status}"
            loc = headers.get("location") or ""
            if "/fhir/Flag/" not in loc:
                return "no Location"
            if not isinstance(body, dict) or body.get("resourceType") != "Flag" or not body.get("id"):
                return "not a Flag"
            if not loc.split("/_history")[0].endswith("/" + body["id"]):
                return "Location does not name the new id"
            return None
        if status != 200:
            return f"status {status}"
        if self.name == "read":
            if (
                not isinstance(body, dict)
                or body.get("resourceType") != "Flag"
                or body.get("id") != req.expect
            ):
                return "wrong resource"
            return None
        if (
            not isinstance(body, dict)
            or body.get("resourceType") != "Bundle"
            or body.get("type") != "searchset"
        ):
            return "not a searchset"
        nhs, expected = req.expect
        entries = body.get("entry") or []
        matches = [e["resource"] for e in entries if (e.get("search") or {}).get("mode", "match") == "match"]
        if len(matches) != expected:
            return f"{len(matches)} matches, expected {expected}"
        for m in matches:
            if (
                m.get("resourceType") != "Flag"
                or m.get("status") != "active"
                or (m["subject"]["identifier"]["value"] != nhs)
            ):
                return "a match is not an active Flag of that child"
        includes = [e["resource"] for e in entries if (e.get("search") or {}).get("mode") == "include"]
        if self.require_include and not any(r.get("resourceType") == "Organization" for r in includes):
            return "no included author Organization"
        return None

"""The policy matrix: every role x resource type x interaction x label (restricted or not) x
organisation (own or other), allowed and denied.

EXPECTED is written by hand from contract section 3, NOT computed from app/security/policy.py.
Each cell is five letters for read, search, create, update, delete:
    A  any record (restricted ones only for safeguarding-lead, admin and the authoring organisation)
    O  records of the user's own organisation only
    C  records created by the user's own organisation and client only (404 for any other, every interaction)
    Y  create allowed (with a typical resource of the type)
    -  refused for the role (403)
    X  refused for everyone (405: never deleted / server-written)
Expected outcome of a cell for one record:
    read   A: 200, or 403 when restricted and written by another organisation and the role is not cleared;
           O: 200 for an own-organisation record, 404 otherwise (the role may not know it exists)
    search the same, as visible / withheld (counted in the information entry) / hidden
    update, delete: first as read (404/403), then O refuses another organisation's record with 403
"""

from __future__ import annotations

from typing import Any

import pytest

from app.security.labels import CONFIDENTIALITY
from app.security.policy import Visibility, decide, visibility
from app.security.principal import Principal
from app.security.scopes import ScopeSet

# fmt: off
ROLES = ["ed-clinician", "health-visitor", "school-nurse", "sexual-health-clinician",
         "safeguarding-lead", "mash-practitioner", "system", "admin"]
EXPECTED = """
type               ed     hv     sn     sh     lead   mash   system admin
Patient            AA---  AA---  AA---  AA---  AA---  AA---  AAYA-  AAYAA
Practitioner       AA---  AA---  AA---  AA---  AA---  -----  AAYA-  AAYAA
PractitionerRole   AA---  AA---  AA---  AA---  AA---  -----  AAYA-  AAYAA
Organization       AA---  AA---  AA---  AA---  AA---  AA---  AAYA-  AAYAA
CareTeam           AA---  AA---  AA---  AA---  AA---  -----  AAYA-  AAYAA
RelatedPerson      AAYO-  AAYO-  AAYO-  AAYO-  AAYO-  -----  AAYA-  AAYAA
Encounter          OOYO-  OOYO-  OOYO-  OOYO-  AAYO-  -----  AAYA-  AAYAA
Flag               AAYOX  AAYOX  AAYOX  AAYOX  AAYOX  AAYOX  AAYAX  AAYAX
Communication      OOYO-  OOYO-  OOYO-  OOYO-  AAYO-  OOYO-  OOYO-  AAYAA
DocumentReference  OOYOX  OOYOX  OOYOX  OOYOX  AAYOX  OO--X  OOYOX  AAYAX
Binary             OOYOX  OOYOX  OOYOX  OOYOX  AAYOX  OO--X  OOYOX  AAYAX
Task               OO---  OO-O-  OO-O-  OO---  AAYO-  -----  OOYO-  AAYAA
Subscription       -----  -----  -----  -----  -----  -----  CCYCC  AAYAA
AuditEvent         --XXX  --XXX  --XXX  --XXX  AAXXX  --XXX  AAXXX  AAXXX
"""
# fmt: on
INTERACTIONS = ["read", "search", "create", "update", "delete"]
CLEARED = {"safeguarding-lead", "admin"}
OWN, OTHER = "Organization/own", "Organization/other"
CS = "https://fhir.safeflag.example/CodeSystem/"


def _table() -> dict[tuple[str, str], str]:
    lines = [line.split() for line in EXPECTED.strip().splitlines()[1:]]
    return {(row[0], role): cell for row in lines for role, cell in zip(ROLES, row[1:], strict=True)}


TABLE = _table()


def sample(rtype: str, org: str, restricted: bool) -> dict[str, Any]:
    """A typical resource of the type, naming `org` wherever the type names an organisation."""
    ref = {"reference": org}
    res: dict[str, Any] = {"resourceType": rtype, "id": f"{rtype.lower()}-{org.rsplit('/', 1)[1]}"}
    if rtype == "Encounter":
        res["serviceProvider"] = ref
    elif rtype == "Flag":
        res.update(status="active", author=ref, subject={"reference": "Patient/child"},
                   category=[{"coding": [{"system": CS + "safeguarding-flag-category", "code": "child-protection-plan"}]}])
    elif rtype == "Communication":
        res.update(status="completed", recipient=[ref], sender=ref, subject={"reference": "Patient/child"},
                   category=[{"coding": [{"system": CS + "safeguarding-communication-category",
                                          "code": "referral-outcome"}]}])
    elif rtype == "DocumentReference":
        res.update(status="current", author=[ref], custodian=ref)
    elif rtype == "Subscription":  # created by the sample principal's client (`principal` below)
        res.update(status="off", meta={"tag": [{"system": CS + "created-by-client", "code": "u-system"}]})
    elif rtype == "Task":
        res.update(status="requested", owner=ref, code={"coding": [{"system": CS + "safeguarding-task",
                                                                    "code": "referral-qa"}]})
    if restricted:
        res["meta"] = {**res.get("meta", {}), "security": [{"system": CONFIDENTIALITY, "code": "R"}]}
    return res


def principal(role: str, shared: frozenset[str]) -> Principal:
    scope = "system/*.cruds" if role == "system" else "user/*.cruds"
    return Principal(sub=f"u-{role}", role=role, scopes=ScopeSet.parse(scope), issuer="test", org=OWN,
                     org_refs=frozenset({OWN}), shared_refs=shared)


def expected_read(cell: str, role: str, own: bool, restricted: bool) -> int:
    letter = cell[0]
    if letter == "-":
        return 403
    if letter in "OC" and not own:
        return 404
    if restricted and not own and role not in CLEARED:
        return 403
    return 200


def expected(cell: str, interaction: str, role: str, own: bool, restricted: bool) -> int:
    letter = cell[INTERACTIONS.index(interaction)]
    if letter == "X":
        return 405
    if letter == "-":
        return 403
    if interaction == "create":
        return 200
    read = expected_read(cell, role, own, restricted)
    if interaction in ("read", "search") or read != 200:
        return read
    return 403 if letter == "O" and not own else 200


CASES = [
    pytest.param(rtype, role, interaction, restricted, own,
                 id=f"{rtype}-{role}-{interaction}-{'R' if restricted else 'N'}-{'own' if own else 'other'}")
    for (rtype, role) in TABLE
    for interaction in INTERACTIONS
    for restricted in (False, True)
    for own in (True, False)
]


@pytest.mark.parametrize("rtype, role, interaction, restricted, own", CASES)
def test_matrix(rtype: str, role: str, interaction: str, restricted: bool, own: bool) -> None:
    cell = TABLE[(rtype, role)]
    want = expected(cell, interaction, role, own, restricted)
    stored = sample(rtype, OWN if own else OTHER, restricted)
    created_by = OWN if own else OTHER
    shared = frozenset({f"{rtype}/{stored['id']}"}) if own and rtype in ("DocumentReference", "Binary") else frozenset()
    who = principal(role, shared)
    if interaction == "search":
        decision = decide(who, "search", rtype)
        assert (decision.allowed, decision.status) == ((True, 200) if cell[1] != "-" else (False, 403))
        seen = visibility(who, rtype, stored, created_by)
        shown = {200: Visibility.VISIBLE, 403: Visibility.WITHHELD, 404: Visibility.HIDDEN}[want]
        assert seen is (Visibility.HIDDEN if cell[1] == "-" else shown)
        return
    if interaction == "create":
        decision = decide(who, "create", rtype, sample(rtype, OWN, restricted))
    elif interaction == "update":
        decision = decide(who, "update", rtype, {**stored, "status": "entered-in-error"}, current=stored,
                          created_by_org=created_by)
    else:
        decision = decide(who, interaction, rtype, stored, created_by_org=created_by)
    assert decision.status == want, decision.reason
    assert decision.allowed is (want == 200)


def test_matrix_is_complete() -> None:
    from app.fhir.search.definitions import SUPPORTED_TYPES

    assert {t for t, _ in TABLE} == set(SUPPORTED_TYPES)
    assert len(CASES) == len(SUPPORTED_TYPES) * len(ROLES) * len(INTERACTIONS) * 4

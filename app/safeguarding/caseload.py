"""`safeflag import-caseload FILE.csv`: health-visitor, school-nurse and
safeguarding-lead caseloads as one CareTeam per child, which routing (routing.py) then reads.

CSV columns (header row required, any order, extra columns ignored):
`nhs_number` (10 digits, Modulus 11), `practitioner` (`PractitionerRole/<id>` or `Practitioner/<id>`, as
the notices will reference it), `role` (`health-visitor` | `school-nurse` | `safeguarding-lead`, from
`https://fhir.safeflag.example/CodeSystem/care-team-role`), `team` (`Organization/<id>`), `start_date`
(`YYYY-MM-DD`).

- Every row is checked first (NHS number, role code, reference syntax, date), then the practitioner and
  team must exist on the server; a bad row is reported with its line number and never written.
- Good rows are committed per batch (default 500 rows) in one transaction each: a batch is all or
  nothing, and a failed batch does not undo the batches before it.
- Idempotent: the child's CareTeam is found by identifier `https://fhir.safeflag.example/Id/caseload|<nhs>`;
  a participant (role, member) already on it is left alone, so a re-run writes nothing (an unchanged
  update creates no version). A new holder of a role with a later start date ends the previous holder's
  participation the day before (one health visitor, school nurse and lead per child at a time).
- A child with no Patient on file gets a minimal one (the NHS number only), so that an ED attendance
  that names the child by NHS number reaches the caseload holder. A live Patient's NHS number is unique:
  when another writer gives the number to a Patient while the import creates one, the database refuses
  the second (409) and that child's rows are bad rows, the rest of the batch is kept.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import IO, Any

from app.errors import Conflict, FhirError
from app.fhir.ids import ID as _ID
from app.fhir.nhs_number import NHS_NUMBER_SYSTEM, is_valid
from app.ports import UnitOfWork, Work
from app.safeguarding.lookup import Lookup
from app.vocabulary import CARE_TEAM_ROLE, IDENTIFIER_SYSTEM, CareTeamRole

CASELOAD_SYSTEM = IDENTIFIER_SYSTEM + "caseload"
COLUMNS = ("nhs_number", "practitioner", "role", "team", "start_date")
ROLES = (CareTeamRole.HEALTH_VISITOR, CareTeamRole.SCHOOL_NURSE, CareTeamRole.SAFEGUARDING_LEAD)
_PRACTITIONER = re.compile(rf"^(PractitionerRole|Practitioner)/{_ID}$")
_TEAM = re.compile(rf"^Organization/{_ID}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class CaseloadFileError(Exception):
    """The file cannot be read as a caseload at all (no header, missing columns)."""


@dataclass(frozen=True)
class Row:
    line: int
    nhs_number: str
    practitioner: str
    role: str
    team: str
    start: date


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class Report:
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    patients_created: int = 0
    care_teams_created: int = 0
    care_teams_updated: int = 0
    bad: list[BadRow] = field(default_factory=list)


def check_row(line: int, raw: dict[str, str | None]) -> Row | BadRow:
    """One CSV row -> a Row, or a BadRow naming every problem in it."""
    value = {k: (raw.get(k) or "").strip() for k in COLUMNS}
    problems = []
    if not is_valid(value["nhs_number"]):
        problems.append(f"nhs_number '{value['nhs_number']}' is not a valid NHS number (10 digits, Modulus 11)")
    if not _PRACTITIONER.match(value["practitioner"]):
        problems.append(f"practitioner '{value['practitioner']}' must be PractitionerRole/<id> or Practitioner/<id>")
    if value["role"] not in ROLES:
        problems.append(f"role '{value['role']}' must be one of {', '.join(ROLES)}")
    if not _TEAM.match(value["team"]):
        problems.append(f"team '{value['team']}' must be Organization/<id>")
    start = None
    if _DATE.match(value["start_date"]):
        with contextlib.suppress(ValueError):
            start = date.fromisoformat(value["start_date"])
    if start is None:
        problems.append(f"start_date '{value['start_date']}' must be a date YYYY-MM-DD")
    if problems or start is None:
        return BadRow(line, "; ".join(problems))
    return Row(line, value["nhs_number"], value["practitioner"], value["role"], value["team"], start)


def read_rows(stream: IO[str]) -> tuple[list[Row], list[BadRow]]:
    reader = csv.DictReader(stream)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CaseloadFileError(f"the header row lacks column(s) {', '.join(missing)} (needs {', '.join(COLUMNS)})")
    reader.fieldnames = header
    rows: list[Row] = []
    bad: list[BadRow] = []
    for raw in reader:
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue  # a blank line
        checked = check_row(reader.line_num, raw)
        (rows if isinstance(checked, Row) else bad).append(checked)  # type: ignore[arg-type]
    return rows, bad


def _role(participant: dict[str, Any]) -> str | None:
    for concept in participant.get("role") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == CARE_TEAM_ROLE and coding.get("code") in ROLES:
                return str(coding["code"])
    return None


def merge(team: dict[str, Any], row: Row) -> bool:
    """Add `row` to the CareTeam content in place; False when it is already there."""
    participants: list[dict[str, Any]] = team.setdefault("participant", [])
    for p in participants:
        if _role(p) == row.role and (p.get("member") or {}).get("reference") == row.practitioner:
            return False
    for p in participants:  # the previous holder of the role hands over the day before
        period = p.get("period") or {}
        if _role(p) == row.role and not period.get("end") and (period.get("start") or "") < row.start.isoformat():
            p["period"] = {**period, "end": (row.start - timedelta(days=1)).isoformat()}
    participant: dict[str, Any] = {
        "role": [{"coding": [{"system": CARE_TEAM_ROLE, "code": row.role}]}],
        "member": {"reference": row.practitioner},
    }
    if row.practitioner.startswith("Practitioner/"):  # ctm-1: a PractitionerRole names its organisation itself
        participant["onBehalfOf"] = {"reference": row.team}
    participant["period"] = {"start": row.start.isoformat()}
    participants.append(participant)
    return True


def new_care_team(patient_id: str, row: Row) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "identifier": [{"system": CASELOAD_SYSTEM, "value": row.nhs_number}],
        "status": "active",
        "name": "0-19 caseload",
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [],
        "managingOrganization": [{"reference": row.team}],
    }


class _Batch:
    """One transaction's worth of rows."""

    def __init__(self, svc: Work, report: Report, known: dict[str, bool]) -> None:
        self.svc = svc
        self.lookup = Lookup(svc.session, svc.settings.fhir_base)
        self.report = report
        self.known = known  # reference -> exists, across batches

    async def exists(self, reference: str) -> bool:
        if reference not in self.known:
            self.known[reference] = await self.lookup.get(reference) is not None
        return self.known[reference]

    async def patient(self, nhs: str) -> str:
        """The child's Patient id, a new minimal Patient when there is none; Conflict (409) when the
        NHS number is held by a Patient this transaction cannot see yet (a concurrent writer)."""
        found = await self.lookup.patients_by_nhs_number(nhs)
        if found:
            return found[0].id  # the only one: the database keeps a live Patient's NHS number unique
        async with self.svc.repo.savepoint():  # a refused create leaves nothing behind
            created = await self.svc.create("Patient", {"resourceType": "Patient",
                                                        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs}]})
        self.report.patients_created += 1
        assert created.stored is not None
        return created.stored.id

    async def apply_child(self, nhs: str, rows: list[Row]) -> None:
        good = []
        for row in rows:
            missing = [r for r in (row.practitioner, row.team) if not await self.exists(r)]
            if missing:
                self.report.bad.append(BadRow(row.line, f"{' and '.join(missing)} not found on this server"))
            else:
                good.append(row)
        if not good:
            return
        teams = await self.lookup.search("CareTeam", [("identifier", f"{CASELOAD_SYSTEM}|{nhs}")], count=1)
        if teams:
            current, content = teams[0], dict(teams[0].content)
            content["participant"] = [dict(p) for p in content.get("participant") or []]
        else:
            try:
                patient_id = await self.patient(nhs)
            except Conflict as exc:
                reason = str(exc.outcome()["issue"][0]["diagnostics"])
                self.report.bad += [BadRow(r.line, f"no Patient created: {reason}") for r in good]
                return
            current, content = None, new_care_team(patient_id, good[0])
        changed = [merge(content, row) for row in good]
        self.report.imported += sum(changed)
        self.report.unchanged += len(changed) - sum(changed)
        if current is None:
            await self.svc.create("CareTeam", content)
            self.report.care_teams_created += 1
        elif any(changed):
            await self.svc.update("CareTeam", current.id, content)
            self.report.care_teams_updated += 1


async def import_rows(
    ctx: UnitOfWork, rows: list[Row], report: Report, *, batch_size: int = 500,
    progress: Callable[[int], None] = lambda n: None,
) -> None:
    """Write the good rows, one transaction per batch; a batch that fails is reported row by row."""
    known: dict[str, bool] = {}
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        snapshot = (report.imported, report.unchanged, report.patients_created, report.care_teams_created,
                    report.care_teams_updated, len(report.bad))
        try:
            async with ctx.unit_of_work() as svc:
                worker = _Batch(svc, report, known)
                for nhs, child_rows in _by_child(batch):
                    await worker.apply_child(nhs, child_rows)
        except FhirError as exc:  # rolled back: nothing of this batch was written
            (report.imported, report.unchanged, report.patients_created, report.care_teams_created,
             report.care_teams_updated) = snapshot[:5]
            del report.bad[snapshot[5]:]
            known.clear()
            reason = f"batch of lines {batch[0].line}-{batch[-1].line} not written: {exc.outcome()['issue'][0].get('diagnostics')}"
            report.bad += [BadRow(r.line, reason) for r in batch]
        progress(len(batch))


def _by_child(rows: Iterable[Row]) -> list[tuple[str, list[Row]]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.nhs_number, []).append(row)
    return list(groups.items())

"""The ED attendance rules as small functions (contract section 5): no I/O."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from app.safeguarding.ed_attendance import attendance_date, did_not_wait, is_attendance, is_injury, priority
from app.safeguarding.routing import age_on, role_for_age
from app.safeguarding.tasks import add_working_days, due_at, due_time, is_overdue

SNOMED = "http://snomed.info/sct"
EMER = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}


def _disposition(code: str, system: str = SNOMED) -> dict:
    return {"hospitalization": {"dischargeDisposition": {"coding": [{"system": system, "code": code}]}}}


@pytest.mark.parametrize(("code", "expected"), [
    ("1066301000000103", True), ("1066311000000101", True), ("1066321000000107", True), ("306689006", False),
])
def test_did_not_wait(code: str, expected: bool) -> None:
    assert did_not_wait(_disposition(code)) is expected
    assert did_not_wait(_disposition(code, "http://example.org/other")) is False
    assert did_not_wait({}) is False


def test_injury_codes() -> None:
    for code in ("417746004", "82271004", "125667009"):
        assert is_injury({"reasonCode": [{"text": "x"}, {"coding": [{"system": SNOMED, "code": code}]}]})
    assert not is_injury({"reasonCode": [{"coding": [{"system": SNOMED, "code": "22298006"}]}]})
    assert not is_injury({"reasonCode": [{"coding": [{"system": "http://other", "code": "417746004"}]}]})


@pytest.mark.parametrize(("status", "cls", "expected"), [
    ("finished", EMER, True), ("in-progress", EMER, True), ("arrived", EMER, True),
    ("planned", EMER, False), ("cancelled", EMER, False), ("entered-in-error", EMER, False),
    ("finished", {**EMER, "code": "AMB"}, False), ("finished", {"code": "EMER"}, False),
])
def test_is_attendance(status: str, cls: dict, expected: bool) -> None:
    assert is_attendance({"status": status, "class": cls}) is expected


@pytest.mark.parametrize(("plan", "age", "injury", "dnw", "expected"), [
    (True, 10, False, False, "urgent"),
    (False, 0, True, False, "urgent"),
    (False, 1, True, False, "routine"),
    (False, None, True, False, "routine"),
    (False, 0, False, False, "routine"),
    (False, 12, False, True, "urgent"),
    (False, 12, False, False, "routine"),
])
def test_priority(plan: bool, age: int | None, injury: bool, dnw: bool, expected: str) -> None:
    assert priority(plan_flag=plan, age=age, injury=injury, dnw=dnw) == expected


@pytest.mark.parametrize(("birth", "on", "age", "role"), [
    ("2021-03-10", date(2026, 3, 9), 4, "health-visitor"),
    ("2021-03-10", date(2026, 3, 10), 5, "school-nurse"),
    ("2008-03-10", date(2026, 3, 9), 17, "school-nurse"),
    ("2008-03-10", date(2026, 3, 10), 18, None),
    ("2026", date(2026, 3, 10), 0, "health-visitor"),
    ("2020-02", date(2026, 3, 10), 6, "school-nurse"),
    (None, date(2026, 3, 10), None, None),
])
def test_age_and_role(birth: str | None, on: date, age: int | None, role: str | None) -> None:
    assert age_on(birth, on) == age
    assert role_for_age(age) == role


def test_attendance_date() -> None:
    now = datetime(2026, 3, 10, 12)
    assert attendance_date({"period": {"start": "2026-03-01T23:10:00Z"}}, now) == date(2026, 3, 1)
    assert attendance_date({"period": {"start": "bogus-date"}}, now) == date(2026, 3, 10)
    assert attendance_date({}, now) == date(2026, 3, 10)


@pytest.mark.parametrize(("sent", "urgent", "routine"), [
    ("2026-03-06T16:30:00", "2026-03-09T16:30:00", "2026-03-13T16:30:00"),  # Friday
    ("2026-03-07T10:00:00", "2026-03-09T10:00:00", "2026-03-13T10:00:00"),  # Saturday
    ("2026-03-08T10:00:00", "2026-03-09T10:00:00", "2026-03-13T10:00:00"),  # Sunday
    ("2026-03-09T10:00:00", "2026-03-10T10:00:00", "2026-03-16T10:00:00"),  # Monday
])
def test_due_in_working_days(sent: str, urgent: str, routine: str) -> None:
    at = datetime.fromisoformat(sent)
    assert due_time(at, "urgent") == datetime.fromisoformat(urgent)
    assert due_time(at, "routine") == datetime.fromisoformat(routine)
    assert add_working_days(at, 0) == at


def test_overdue() -> None:
    task = {"status": "requested", "restriction": {"period": {"end": "2026-03-09T10:00:00.000+00:00"}}}
    assert due_at(task) == datetime(2026, 3, 9, 10, 0, 0, 1000)
    assert not is_overdue(task, datetime(2026, 3, 9, 10))
    assert is_overdue(task, datetime(2026, 3, 9, 10, 0, 1))
    assert not is_overdue({**task, "status": "completed"}, datetime(2027, 1, 1))
    day = {"status": "requested", "restriction": {"period": {"end": "2026-03-09"}}}
    assert not is_overdue(day, datetime(2026, 3, 9, 23, 59)) and is_overdue(day, datetime(2026, 3, 10))
    assert not is_overdue({"status": "requested"}, datetime(2027, 1, 1))

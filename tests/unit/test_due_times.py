"""Acknowledgement due times (app/safeguarding/tasks.py): working days on the Europe/London calendar,
skipping weekends and the bank holidays of the configured UK region, at fixed instants only.

Every case names the instant sent (UTC) and the due instants (UTC) for urgent (1 working day) and
routine (5 working days) notices; comments give the London wall-clock reading.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.config import Settings
from app.safeguarding.tasks import add_working_days, due_time


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Monday 2 to Sunday 8 March 2026 at 10:00 GMT: no bank holiday within the following fortnight
WEEK = [
    ("2026-03-02T10:00", "2026-03-03T10:00", "2026-03-09T10:00"),  # Monday
    ("2026-03-03T10:00", "2026-03-04T10:00", "2026-03-10T10:00"),  # Tuesday
    ("2026-03-04T10:00", "2026-03-05T10:00", "2026-03-11T10:00"),  # Wednesday
    ("2026-03-05T10:00", "2026-03-06T10:00", "2026-03-12T10:00"),  # Thursday
    ("2026-03-06T10:00", "2026-03-09T10:00", "2026-03-13T10:00"),  # Friday
    ("2026-03-07T10:00", "2026-03-09T10:00", "2026-03-13T10:00"),  # Saturday
    ("2026-03-08T10:00", "2026-03-09T10:00", "2026-03-13T10:00"),  # Sunday
]

# England and Wales (the default)
HOLIDAYS = [
    # Thursday before Easter (BST): Good Friday 3 April and Easter Monday 6 April skipped
    ("2026-04-02T09:00", "2026-04-07T09:00", "2026-04-13T09:00"),
    ("2026-04-03T09:00", "2026-04-07T09:00", "2026-04-13T09:00"),  # sent on Good Friday
    ("2026-04-06T09:00", "2026-04-07T09:00", "2026-04-13T09:00"),  # sent on Easter Monday
    # Christmas Eve 2026 (GMT): Christmas Friday, Boxing Day's substitute Monday 28th, New Year's Day
    ("2026-12-24T10:00", "2026-12-29T10:00", "2027-01-05T10:00"),
    ("2026-12-25T10:00", "2026-12-29T10:00", "2027-01-05T10:00"),
    # the Friday before the spring bank holiday (Monday 25 May 2026): due Tuesday, not on the holiday
    ("2026-05-22T15:30", "2026-05-26T15:30", "2026-06-01T15:30"),
    # the Friday before the late summer bank holiday (Monday 31 August 2026)
    ("2026-08-28T15:30", "2026-09-01T15:30", "2026-09-07T15:30"),
]


@pytest.mark.parametrize(("sent", "urgent", "routine"), WEEK + HOLIDAYS)
def test_due_on_working_days_england_and_wales(sent: str, urgent: str, routine: str) -> None:
    assert due_time(_utc(sent), "urgent") == _utc(urgent)
    assert due_time(_utc(sent), "routine") == _utc(routine)
    # naive UTC in, naive UTC out (the repository's instants)
    assert due_time(datetime.fromisoformat(sent), "urgent") == datetime.fromisoformat(urgent)


@pytest.mark.parametrize(("region", "sent", "urgent", "routine"), [
    # Scotland: Easter Monday is a working day; 2 January is a holiday (2027: Saturday, so Monday 4th)
    ("scotland", "2026-04-02T09:00", "2026-04-06T09:00", "2026-04-10T09:00"),
    ("scotland", "2026-12-24T10:00", "2026-12-29T10:00", "2027-01-06T10:00"),
    ("scotland", "2026-01-01T10:00", "2026-01-05T10:00", "2026-01-09T10:00"),
    ("england-and-wales", "2026-01-01T10:00", "2026-01-02T10:00", "2026-01-08T10:00"),
    # Scotland's summer bank holiday is the first Monday of August, not the last
    ("scotland", "2026-07-31T15:30", "2026-08-04T15:30", "2026-08-10T15:30"),
    ("scotland", "2026-08-28T15:30", "2026-08-31T15:30", "2026-09-04T15:30"),
    # Northern Ireland: St Patrick's Day (Tuesday 17 March 2026)
    ("northern-ireland", "2026-03-16T10:00", "2026-03-18T10:00", "2026-03-24T10:00"),
    ("england-and-wales", "2026-03-16T10:00", "2026-03-17T10:00", "2026-03-23T10:00"),
    # and the Battle of the Boyne (Sunday 12 July 2026, so Monday 13th)
    ("northern-ireland", "2026-07-10T09:00", "2026-07-14T09:00", "2026-07-20T09:00"),
])
def test_due_in_other_regions(region: str, sent: str, urgent: str, routine: str) -> None:
    assert due_time(_utc(sent), "urgent", region) == _utc(urgent)  # type: ignore[arg-type]
    assert due_time(_utc(sent), "routine", region) == _utc(routine)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sent", "urgent"), [
    # 23:30 UTC on a summer Friday is 00:30 on Saturday in London: due Monday 00:30 BST
    ("2026-05-29T23:30", "2026-05-31T23:30"),
    # 23:30 UTC on a summer Thursday is Friday in London: due Monday 00:30 BST, not Friday
    ("2026-06-04T23:30", "2026-06-07T23:30"),
    # across the spring change (Sunday 29 March 2026): 10:00 GMT Friday, due 10:00 BST Monday
    ("2026-03-27T10:00", "2026-03-30T09:00"),
    # sent in the small hours of the change day: due 23 hours later (the shortest any due time gets)
    ("2026-03-29T00:30", "2026-03-29T23:30"),
    # across the autumn change (Sunday 25 October 2026): 10:00 BST Friday, due 10:00 GMT Monday
    ("2026-10-23T09:00", "2026-10-26T10:00"),
])
def test_due_keeps_the_london_wall_clock(sent: str, urgent: str) -> None:
    assert due_time(_utc(sent), "urgent") == _utc(urgent)


def test_zero_days_and_microseconds() -> None:
    at = _utc("2026-03-06T16:30:00.123456")
    assert add_working_days(at, 0) == at
    assert add_working_days(at, 1) == _utc("2026-03-09T16:30:00.123456")


def test_region_setting() -> None:
    assert Settings(_env_file=None).holidays_region == "england-and-wales"  # type: ignore[call-arg]
    assert Settings(holidays_region="scotland", _env_file=None).holidays_region == "scotland"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="holidays_region"):
        Settings(holidays_region="wales", _env_file=None)  # type: ignore[call-arg]

"""How the pages write dates, ages and NHS numbers: UK form on the Europe/London clock, at fixed instants."""

from __future__ import annotations

from datetime import UTC, datetime

from app.web import fmt

WINTER = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_times_are_in_uk_form_on_the_london_clock() -> None:
    assert fmt.uk_datetime("2026-01-05T09:15:00Z") == "5 January 2026, 09:15 GMT"
    assert fmt.uk_datetime("2026-07-01T23:30:00Z") == "2 July 2026, 00:30 BST"  # the next London day
    assert fmt.uk_datetime("2026-03-29T00:59:59+00:00") == "29 March 2026, 00:59 GMT"
    assert fmt.uk_datetime("2026-03-29T01:00:00Z") == "29 March 2026, 02:00 BST"
    assert [fmt.uk_datetime(v) for v in (None, "", "not a date")] == ["", "", ""]
    assert [fmt.uk_date(v) for v in ("2024-01-15", "2024-02", "2024", None)] == [
        "15 January 2024", "February 2024", "2024", ""]


def test_ages_and_how_long_ago() -> None:
    assert [fmt.age(b, WINTER) for b in ("2024-01-15", "2024-01-05", "2025-12-20", "2025-12-05", "2026-01-05")] == [
        "23 months", "2 years", "2 weeks", "1 month", "0 weeks"]
    assert [fmt.age(b, WINTER) for b in (None, "2024", "2024-13-01")] == ["", "", ""]
    assert [fmt.ago(datetime(2026, 1, 5, 9, 0, tzinfo=UTC) - d, WINTER) for d in (
        WINTER - WINTER, WINTER - datetime(2026, 1, 5, 8, 58, tzinfo=UTC),
        WINTER - datetime(2026, 1, 5, 6, 0, tzinfo=UTC), WINTER - datetime(2026, 1, 3, 9, 0, tzinfo=UTC))] == [
        "just now", "2 minutes ago", "3 hours ago", "2 days ago"]
    assert fmt.ago(None, WINTER) == ""


def test_nhs_numbers_are_grouped_and_masked_on_lists() -> None:
    assert fmt.nhs_number("9990000166", masked=False) == "999 000 0166"
    assert fmt.nhs_number("9990000166", masked=True) == "*** *** 0166"
    assert fmt.nhs_number("12345", masked=True) == "*****"
    assert fmt.nhs_number(None, masked=True) == ""


def test_an_instant_reads_as_the_search_reads_it() -> None:
    """The pages read full date-times with `fromisoformat` and partial ones with the search's parser: the
    same moment either way."""
    from app.fhir.search.dates import parse_range

    forms = ("2026-01-05T09:15:00Z", "2026-01-05T09:15:00.5+01:00", "2026-07-01T23:30:00.123456789-05:00",
             "2026-01-05T09:15:00+00:00", "2026-01-05", "2026-01", "2026")
    for value in forms:
        found = parse_range(value)
        assert found is not None, value
        start = found[0] if found[0].tzinfo else found[0].replace(tzinfo=UTC)
        assert fmt.instant(value) == start.astimezone(UTC), value
    assert [fmt.instant(v) for v in ("2026-01-05Tnonsense", "2026-13-05T09:00:00Z", "", None, 5)] == [None] * 5


def test_stored_notice_text_is_shown_with_uk_times_and_names_never_references() -> None:
    names = {"Organization/demo-ed": "Demo General Hospital", "Patient/demo-child": "Casey Demo"}
    text = ("Who: PractitionerRole/demo-ed-nurse of Organization/demo-ed. Where: Emergency department "
            "(http://snomed.info/sct|4525004). When: 2026-07-01T23:30:00.123Z. Which flags: plan (Flag/f-1.2), "
            "about Patient/demo-child; overdue since 2026-01-14T09:05:00+00:00; Organization/unknown.")
    assert fmt.readable(text, names) == (
        "Who: a practitioner of Demo General Hospital. Where: Emergency department. When: 2 July 2026, 00:30 BST. "
        "Which flags: plan, about Casey Demo; overdue since 14 January 2026, 09:05 GMT; an organisation.")
    assert fmt.readable("ED attendance (routed via care-team); (routed via duty-team) (routed via new-way)", {}) == (
        "ED attendance (routed to the child's care team); (routed to the duty team) (routed via new-way)")
    assert fmt.readable("Seen 2026-01-05 by her/him", {}) == "Seen 2026-01-05 by her/him"  # nothing to change


def test_a_texts_names_are_each_readers_own_however_often_it_is_read() -> None:
    """What a text says apart from its references is worked out once (it is the same for everyone); the
    names are those of the records the reader's page read, at every reading."""
    text = "Safeguarding flags owned by Organization/demo-mash were viewed. Who: PractitionerRole/p of Organization/demo-ed."
    read = [fmt.readable(text, names) for names in (
        {"Organization/demo-mash": "Demo Borough MASH", "Organization/demo-ed": "Demo ED"},
        {"Organization/demo-mash": "Demo Borough MASH"},
        {"Organization/demo-mash": "Demo Borough MASH", "Organization/demo-ed": "Demo ED", "PractitionerRole/p": "Pat"},
        {})]
    assert read == [
        "Safeguarding flags owned by Demo Borough MASH were viewed. Who: a practitioner of Demo ED.",
        "Safeguarding flags owned by Demo Borough MASH were viewed. Who: a practitioner of an organisation.",
        "Safeguarding flags owned by Demo Borough MASH were viewed. Who: Pat of Demo ED.",
        "Safeguarding flags owned by an organisation were viewed. Who: a practitioner of an organisation."]

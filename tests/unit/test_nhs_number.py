"""NHS number Modulus 11 check (https://www.datadictionary.nhs.uk/attributes/nhs_number.html), test range 999 only."""

from __future__ import annotations

import pytest

from app.fhir.nhs_number import check_digit, is_valid

VALID = [
    "9990000018", "9990000026", "9990000034", "9990000042", "9990000050", "9990000069", "9990000077", "9990000085",
    "9990000093", "9990000107", "9990000115", "9990000123", "9990000131", "9990000158", "9990000166", "9990000174",
]


@pytest.mark.parametrize("number", VALID)
def test_valid_test_range_numbers(number: str) -> None:
    assert is_valid(number)


def test_check_digit_weights_ten_down_to_two() -> None:
    # 9*10 + 9*9 + 9*8 + 0*7.. + 1*2 = 245; 245 % 11 = 3; 11 - 3 = 8
    assert check_digit("999000001") == 8
    assert check_digit("999000010") == 7
    # 9*10 + 9*9 + 9*8 + 5*2 = 253 = 11*23: a remainder of 0 gives 11, which stands for 0
    assert check_digit("999000005") == 0
    assert is_valid("9990000050")


def test_check_digit_ten_means_no_valid_number() -> None:
    # 9*10 + 9*9 + 9*8 + 1*3 + 4*2 = 254; 254 % 11 = 1; 11 - 1 = 10: no number starting 999000014 is valid
    assert check_digit("999000014") is None
    assert [d for d in "0123456789" if is_valid("999000014" + d)] == []


@pytest.mark.parametrize(
    "number",
    [
        "9990000019",  # wrong check digit (8 expected)
        "9990000017",
        "9990000027",  # 9990000026 with the last digit changed
        "9990000108",
    ],
)
def test_wrong_check_digit(number: str) -> None:
    assert not is_valid(number)


@pytest.mark.parametrize(
    "number",
    [
        "",
        "999000001",  # nine digits
        "99900000180",  # eleven digits
        "999 000 0018",  # spaced
        "999-000-0018",
        "999000001A",
        " 9990000018",
        "999000001²",  # str.isdigit() takes superscripts, int() does not
        "٩٩٩٠٠٠٠٠١٨",  # Arabic-Indic digits for 9990000018
    ],
)
def test_wrong_length_or_not_ascii_digits(number: str) -> None:
    assert not is_valid(number)

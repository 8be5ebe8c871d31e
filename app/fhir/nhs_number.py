"""NHS number check digit (Modulus 11): weights 10..2 over the first nine digits, 11 -> 0, 10 invalid.

https://www.datadictionary.nhs.uk/attributes/nhs_number.html
"""

from __future__ import annotations

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def check_digit(first_nine: str) -> int | None:
    """The check digit for nine ASCII digits, or None when the remainder makes it 10 (no valid number)."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid(value: str) -> bool:
    # isascii: str.isdigit() is also true for '²' or Arabic-Indic digits, which int() may not take
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    return check_digit(value[:9]) == int(value[9])

"""NHS number check digit (Modulus 11): weights 10..2 over the first nine digits, 11 -> 0, 10 invalid.

https://www.datadictionary.nhs.uk/attributes/nhs_number.html
"""

from __future__ import annotations

from operator import mul

from app.vocabulary import NHS_NUMBER_SYSTEM

__all__ = ["NHS_NUMBER_SYSTEM", "check_digit", "is_valid"]

_WEIGHTS = range(10, 1, -1)
_DIGIT_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))  # b"7" -> b"\x07"


def check_digit(first_nine: str) -> int | None:
    """The check digit for nine ASCII digits, or None when the remainder makes it 10 (no valid number)."""
    # checked on every write that carries an NHS number: bytes, not one int() per digit
    total = sum(map(mul, first_nine[:9].encode().translate(_DIGIT_VALUES), _WEIGHTS))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid(value: str) -> bool:
    # isascii: str.isdigit() is also true for '²' or Arabic-Indic digits, which int() may not take
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    return check_digit(value[:9]) == int(value[9])

"""NHS number check digit (Modulus 11): weights 10..2 over the first nine digits, 11 -> 0, 10 invalid.

https://www.datadictionary.nhs.uk/attributes/nhs_number.html
"""

from __future__ import annotations

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def is_valid(value: str) -> bool:
    if len(value) != 10 or not value.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10:
        return False
    return check == int(value[9])

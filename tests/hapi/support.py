"""Helpers for the `hapi` tests: fixture files, fresh test-range NHS numbers, a REST-hook receiver that
also records the HTTP method (HAPI delivers a payload subscription as `PUT <endpoint>/<type>/<id>`)."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.fhir.nhs_number import NHS_NUMBER_SYSTEM, check_digit
from tests.support.receiver import Receiver

FIXTURES = Path(__file__).parent / "fixtures"
PROFILES = FIXTURES / "profiles"
INVALID = FIXTURES / "invalid"
FHIR_JSON = "application/fhir+json"

# The sandbox's database lives for the whole session and later `hapi` modules share it, so each test
# takes NHS numbers nobody else used. Still only 999 test-range numbers with a valid check digit.
_nhs_numbers = (
    f"{nine}{digit}"
    for nine in (f"999{n:06d}" for n in itertools.count(random.Random().randrange(100_000, 900_000)))
    if (digit := check_digit(nine)) is not None
)


def new_nhs_number() -> str:
    return next(_nhs_numbers)


def nhs_identifier(nhs: str) -> dict[str, str]:
    return {"system": NHS_NUMBER_SYSTEM, "value": nhs}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


@dataclass
class HookReceiver(Receiver):
    """tests.support.receiver.Receiver plus the method of each recorded request (same order)."""

    methods: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.status < 300:
            self.methods.append(scope["method"])
        await super().__call__(scope, receive, send)

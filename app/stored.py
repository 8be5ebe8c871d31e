"""What a stored resource looks like, shared by the layer that stores it and the FHIR toolkit that
renders it: a current resource, one of its versions, the search-index rows of a resource, and the FHIR
`instant` of a stored timestamp. Plain data at the bottom of the house, so that `app/storage/` builds
these shapes and `app/fhir/` reads them without either importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StoredResource:
    pk: int
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime  # naive UTC, millisecond precision
    deleted: bool
    content: dict[str, Any]
    created_by_org: str | None = None  # the `org` of the token that created it (access policy)

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'


@dataclass(frozen=True)
class VersionRecord:
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    method: str  # POST | PUT | DELETE
    content: dict[str, Any] | None


@dataclass
class IndexRows:
    """A resource's search-index rows, one list per index table (app/fhir/search/definitions.py)."""

    tokens: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    strings: list[tuple[str, str, str]] = field(default_factory=list)
    references: list[tuple[str, str | None, str | None, str | None, str | None, str | None]] = field(
        default_factory=list
    )
    dates: list[tuple[str, datetime, datetime]] = field(default_factory=list)


def format_instant(ts: datetime) -> str:
    """FHIR `instant` for a naive-UTC timestamp, millisecond precision."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+00:00"

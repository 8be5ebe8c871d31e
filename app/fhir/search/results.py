"""What a search found: the page of matches, the total and the included resources. The shape the
searchset Bundle is built from (`app/fhir/bundles.py`), whoever ran the search: the store
(`app/search/executor.py`) or the conformance resources held in memory (`app/fhir/conformance.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.fhir.search.params import SearchRequest
from app.stored import StoredResource


@dataclass
class SearchResult:
    request: SearchRequest
    matches: list[StoredResource]
    total: int | None
    included: list[StoredResource] = field(default_factory=list)
    includes_truncated: bool = False

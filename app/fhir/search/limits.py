"""How much one search may ask for: a bound on its criteria and on its ORed values, enforced while the
query is parsed (https://hl7.org/fhir/R4/search.html; issue type `too-costly`,
https://hl7.org/fhir/R4/valueset-issue-type.html).

Every criterion becomes a subquery: a request repeating `name=a` a hundred times kept a PostgreSQL
backend busy for minutes (planning alone grows faster than the number of criteria: 50 ms for 10,
0.4 s for 20), and a thousand ORed values overflowed SQLite's expression depth. Per search (a GET or
POST `_search`, a conditional interaction's criteria, a Bundle entry's search, a subscription's
filters) the bound counts:

- criteria: each occurrence of a search parameter, and each `_sort`, `_include` and `_revinclude`
  value;
- values: each ORed value (`a,b` is two; `:missing` one) of every criterion, and of a chained one
  once per resource type it is tried on (a chain through an untyped reference is tried on every type
  that has the chained parameter);
- chains: through at most `MAX_CHAIN` references (`a.b.c.d`); each multiplies the types tried, which made
  `subject.subject.subject...` grow exponentially.

Past any bound the search is refused before any SQL is built: 400 `too-costly`. The budget is spent
while parsing, so a refused query costs no more than the bound itself to read.
"""

from __future__ import annotations

from app.config import MAX_CHAIN, SearchLimits
from app.errors import BadRequest

__all__ = ["DEFAULT_LIMITS", "MAX_CHAIN", "Budget", "SearchLimits", "SearchTooCostly"]

DEFAULT_LIMITS = SearchLimits()


class SearchTooCostly(BadRequest):
    """400 `too-costly`: the search asks for more than the configured bound."""

    default_code = "too-costly"


class Budget:
    """What is left of one search's bound; `spend` raises SearchTooCostly once it is overdrawn."""

    def __init__(self, limits: SearchLimits | None) -> None:
        self.limits = limits
        self.criteria = 0
        self.values = 0

    def spend(self, key: str, *, criteria: int = 0, values: int = 0) -> None:
        limits = self.limits
        if limits is None:
            return
        self.criteria += criteria
        self.values += values
        if self.criteria > limits.max_criteria:
            raise SearchTooCostly(
                f"The search has more than {limits.max_criteria} criteria (each repeated parameter and each "
                "_sort, _include and _revinclude value counts once); narrow it or split it",
                msg_id="SF-0430", expression=key,
            )
        if self.values > limits.max_values:
            raise SearchTooCostly(
                f"The search has more than {limits.max_values} values in all (a,b counts two; a chained "
                "parameter's count once per resource type it is tried on); narrow it or split it",
                msg_id="SF-0431", expression=key,
            )

    def check_chain(self, key: str) -> None:
        if self.limits is not None and key.count(".") > MAX_CHAIN:
            raise SearchTooCostly(f"Chains through more than {MAX_CHAIN} references are not supported ('{key[:200]}')",
                                  msg_id="SF-0432", expression=key)

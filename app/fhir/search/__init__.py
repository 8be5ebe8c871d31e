"""FHIR search as the toolkit knows it: the search parameters of each type and how their values are read
from a resource (`definitions.py`, `extract.py`), a search request parsed and bounded (`params.py`,
`criteria.py`, `limits.py`), and an in-memory matcher for subscription filters (`matcher.py`). Running
a search against the store is `app/search/`.
"""

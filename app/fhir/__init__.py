"""The FHIR toolkit: what SafeFlag knows about FHIR R4 itself, used by the layers above and asking
nothing of them: validation (`validation.py`, profiles/, invariants, bindings, terminology, NHS numbers),
search (search/: parameters, criteria, index definitions, the in-memory matcher), Bundles, elements and
JSON Patch. It imports neither storage nor the access policy: running a search against the store is
`app/search/`, the shapes of stored resources are `app/stored.py`. The interactions that use it, and the
access policy around them, live in `app/interactions/` and `app/security/`.
"""

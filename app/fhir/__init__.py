"""The FHIR toolkit: what SafeFlag knows about FHIR R4 itself, used by the layers above and asking
nothing of them: validation (`validation.py`, profiles/, invariants, bindings, terminology, NHS numbers),
search (search/: parameters, SQL, execution), Bundles, elements and JSON Patch. The interactions that
use it, and the access policy around them, live in `app/interactions/` and `app/security/`.
"""

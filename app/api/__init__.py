"""The FHIR API over HTTP: one dispatch table of every endpoint under `/fhir` (`fhir_routes.py`, served by
`router.py`), the endpoints themselves (`interactions.py`, `operations.py`, `subscriptions.py`, ...), token
authentication (`auth.py`) and responses (`responses.py`). Endpoints stay thin: parse, call the
interaction engine (`app/interactions/`), shape the response.
"""

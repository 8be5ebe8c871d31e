"""SafeFlag: a FHIR R4 server for NHS child safeguarding, one package in layers, each importing only
the layers below it (docs/architecture.md; `make lint` checks them). From the top: the composition
(`main.py`, `worker.py`, `context.py`, `resource_rules.py`), the FHIR API and the web app (`api/`,
`web/`), the interaction engine (`interactions/`), the resource-type rules and notifications
(`safeguarding/`, `notify/`), the access policy and audit trail (`security/`), search over the store
(`search/`), the FHIR toolkit (`fhir/`), storage (`storage/`), and the leaves (`config.py`, `errors.py`,
`vocabulary.py`, `stored.py`).
"""

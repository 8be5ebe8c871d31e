"""The interaction engine: the FHIR RESTful interactions (read, search, create, update, patch, delete,
history, batch and transaction, `$validate` of an instance) as the API and Bundle entries run them,
with the access policy asked and audited around each one and the resource-type write rules
(safeguarding, notifications) run inside the write's own transaction.

It sits above `app/safeguarding`, `app/notify` and `app/security`, and below `app/api`; `app/fhir`
underneath is the FHIR toolkit it uses (validation, profiles, search, bundles, elements).
"""

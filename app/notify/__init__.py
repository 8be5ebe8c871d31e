"""Subscriptions and their notifications: the topics published in `fhir_profiles/` (`topics.py`), the
rules of a Subscription write (`subscription_rules.py`), the transactional outbox (`outbox.py`), and the
dispatcher that matches committed changes and delivers them, leased and gap-free (`dispatcher.py`,
`matcher.py`, `delivery.py`, `channels/`). It never imports `app/safeguarding/`; `app/worker.py` joins
the two.
"""

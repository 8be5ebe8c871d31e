"""Who may do what, and the record of it: the access policy (`policy.py`, decided once per interaction
through `guard.py`), tokens and principals, restricted-record labels, and the audit trail (`audit.py`
builds each AuditEvent, `audit_trail.py` appends it to the hash-chained table, `audit_search.py` reads
and searches it, `audit_verify.py` checks the chain).
"""

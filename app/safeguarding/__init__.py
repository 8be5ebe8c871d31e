"""The safeguarding rules per resource type, run by the interaction engine's interceptor chain as
`app/resource_rules.py` puts them there: flags (`flags.py`), ED attendances (`encounter_rules.py`,
`ed_attendance.py`, `routing.py`, `unrouted.py`), MASH referral copies (`referrals.py`,
`referral_qa.py`), access notifications (`access.py`); with the jobs and commands around them
(escalation, caseload import, the governance report).
"""

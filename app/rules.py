"""Composition of the resource-type rules (write hooks): importing this module registers them all.

Each rule module registers its hooks with the decorators in `app/interactions/hooks.py` at import time.
"""

from __future__ import annotations

import importlib

RULE_MODULES = (
    "app.notify.hooks",
    "app.safeguarding.encounter_hooks",
    "app.safeguarding.referrals",
    "app.safeguarding.referral_qa",
    "app.safeguarding.flags",
    "app.safeguarding.access",
)


def load() -> None:
    for name in RULE_MODULES:
        importlib.import_module(name)

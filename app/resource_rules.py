"""Which resource-type rules run around which interactions: the one place the rules of safeguarding
and notifications are put on the engine's interceptor chain (app/interactions/interceptors.py), by
plain calls, in the order they run. The app (app/main.py), the dispatcher and the CLI commands that
write build their `AppContext` with `resource_rules()`, so every write runs the same rules.

Layer: part of the composition, above `app/api` and the engine and below `app/context.py` and the
entry points (app/main.py, app/worker.py); the rules themselves never import it.
"""

from __future__ import annotations

from app.interactions.interceptors import Interceptors
from app.notify import subscription_rules
from app.safeguarding import access, encounter_rules, flags, referral_qa, referrals


def resource_rules() -> Interceptors:
    chain = Interceptors()
    # Subscriptions: the creator tag and delivery state, kept in step with the resource (notify/subscription_rules.py)
    chain.before_write("Subscription", subscription_rules.prepare_subscription)
    chain.after_write("Subscription", subscription_rules.store_subscription_state)
    chain.before_delete("Subscription", subscription_rules.note_subscription_delete)
    # Flags: the lifecycle of a safeguarding flag (safeguarding/flags.py)
    chain.before_write("Flag", flags.flag_rules)
    # an ED attendance (an Encounter write): its notices and Tasks (safeguarding/encounter_rules.py)
    chain.after_write("Encounter", encounter_rules.ed_attendance)
    # MASH referral copies (safeguarding/referrals.py) and their quality review (safeguarding/referral_qa.py)
    chain.before_write("DocumentReference", referrals.referral_copy_rules)
    chain.after_write("DocumentReference", referrals.referral_copy_links)
    chain.before_write("Binary", referrals.binary_rules)
    chain.after_write("Binary", referrals.binary_context)
    chain.before_write("Task", referral_qa.referral_qa_rules)
    # a Communication: first the referral's own rules (a mash-referral is immutable but for its status),
    # then those of the local authority's reply (a referral-outcome answers a stored mash-referral)
    chain.before_write("Communication", referrals.referral_communication_rules, referral_qa.referral_outcome_rules)
    chain.before_delete("Communication", referrals.referral_communication_kept)
    # a user's read of active Flags may notify the owning organisation (safeguarding/access.py)
    chain.after_read(access.flags_read)
    return chain

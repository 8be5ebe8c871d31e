"""Fixtures of the governance report tests: `rclient` (tests/referrals/support.py)."""

from tests.referrals.support import rclient  # noqa: F401  (pytest fixture)

"""The keys of the tests: the receiver's callback auth keys, and the simulator's accounts and signing key.

Two systems, two sets of names: a receiver's ``LIVE_KEY`` checks a callback's header, a simulator's
``API_LIVE_KEY`` is an account's API key (its ``live_`` prefix makes its tasks live).
"""

from __future__ import annotations

LIVE_KEY = "live-callback-key-0123456789"
"""The receiver's live callback key (SCALE_CALLBACK_AUTH_KEY, first of two)."""

OLD_LIVE_KEY = "old-live-key-being-rotated"
"""A second live key, as during a rotation (SCALE_CALLBACK_AUTH_KEY, second)."""

TEST_KEY = "test-callback-key-abcdef"
"""The receiver's test callback key (SCALE_TEST_CALLBACK_AUTH_KEY)."""

API_TEST_KEY = "test_0123456789abcdef"
"""A simulator account's test API key."""

API_OTHER_TEST_KEY = "test_someone_else"
"""Another simulator account's test API key (tasks of one account are invisible to the other)."""

API_LIVE_KEY = "live_0123456789abcdef"
"""A simulator account's live API key."""

CALLBACK_KEY = "sim-callback-auth-key-for-tests"
"""The key the simulator signs its callbacks with in its own tests (no receiver checks it)."""

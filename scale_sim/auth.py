"""API key checking: HTTP Basic with the key as user name; each key is its own account."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scale_sim.exceptions import UnauthorizedError

TEST_PREFIX = "test_"
"""Keys of test-mode accounts: their tasks carry is_test."""

LIVE_PREFIX = "live_"
"""Keys of live-mode accounts."""


@dataclass(frozen=True)
class Account:
    """Who is calling: an opaque id derived from the key (the key itself is never stored or logged)."""

    id: str
    is_test: bool

    @property
    def label(self) -> str:
        """A short, key-free name for logs and the HTML page."""
        return f"{'test' if self.is_test else 'live'}:{self.id[:8]}"


def account_for_key(key: str | None) -> Account:
    """The account of an API key; UnauthorizedError unless it starts with test_ or live_."""
    if not key:
        raise UnauthorizedError("Please provide a valid API key (HTTP Basic auth, the key as user name)")
    if not key.startswith((TEST_PREFIX, LIVE_PREFIX)):
        raise UnauthorizedError("Invalid API key: keys start with test_ or live_")
    digest = hashlib.sha256(key.encode()).hexdigest()
    return Account(id=digest, is_test=key.startswith(TEST_PREFIX))

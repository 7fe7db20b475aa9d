"""Keys and accounts, and the per-key request rate limit."""

from __future__ import annotations

import pytest

from scale_sim.auth import account_for_key
from scale_sim.exceptions import UnauthorizedError
from scale_sim.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_key_is_its_own_account() -> None:
    test, live, other = (account_for_key(k) for k in ("test_a", "live_a", "test_b"))
    assert test.is_test and not live.is_test
    assert len({test.id, live.id, other.id}) == 3
    assert "test_a" not in test.label and test.label.startswith("test:")


@pytest.mark.parametrize("key", [None, "", "a_test_key", "Live_x", "sk_test_x"])
def test_other_keys_are_refused(key: str | None) -> None:
    with pytest.raises(UnauthorizedError):
        account_for_key(key)


def test_zero_means_unlimited() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.retry_after("a") is None for _ in range(1000))


def test_tokens_refill_at_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock)
    assert [limiter.retry_after("a") for _ in range(3)] == [None, None, 1]
    assert limiter.retry_after("b") is None  # another key has its own bucket
    clock.now += 0.5
    assert limiter.retry_after("a") is None
    assert limiter.retry_after("a") == 1


def test_retry_after_is_whole_seconds_for_slow_rates() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.25, clock=clock)
    assert limiter.retry_after("a") is None
    assert limiter.retry_after("a") == 4
    clock.now += 4
    assert limiter.retry_after("a") is None

"""SCALE_SIM_RATE_LIMIT: a token bucket per account, so a client's 429 handling can be exercised."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Allows `rate` requests per second per account, with bursts of up to one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, account_id: str) -> int | None:
        """Take a token for one request: None when allowed, else whole seconds to wait (at least 1)."""
        if self.rate <= 0:
            return None
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(account_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[account_id] = (tokens - 1, now)
                return None
            self._buckets[account_id] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))

"""The record of which handlers completed for which delivery, so a re-run skips them.

RQ delivers at least once: a retry after one handler failed, a replay from the failed
registry, a job recovered from a crashed worker. Each handler's completion is written right
after it returns, so only a crash between the two repeats a handler; handlers that must
never repeat use ``task.delivery_id`` as the idempotency key in their own store.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from callback_server import defaults


def effects_key(delivery_id: str) -> str:
    """The Redis hash of completed handlers for a delivery."""
    return f"{defaults.EFFECTS_PREFIX}:{delivery_id}"


class Effects:
    """Completed handlers of one delivery."""

    def __init__(self, connection: redis.Redis, delivery_id: str, ttl: int = defaults.EFFECTS_TTL) -> None:
        self.connection = connection
        self.key = effects_key(delivery_id)
        self.ttl = ttl

    def completed(self) -> set[str]:
        """Names of the handlers already done."""
        return {name.decode() for name in self.connection.hkeys(self.key)}

    def record(self, handler: str) -> None:
        """Mark a handler done (one round trip: the write and its expiry together)."""
        pipe = self.connection.pipeline(transaction=True)
        pipe.hset(self.key, handler, datetime.now(UTC).isoformat(timespec="milliseconds"))
        pipe.expire(self.key, self.ttl)
        pipe.execute()

"""The effects record: which handlers completed for which delivery, so a re-run skips them.

One concept, one word: the *effects record* of a delivery is the Redis hash
``scb:done:<delivery_id>`` (handler name -> when it completed), kept ``EFFECTS_TTL`` while the
delivery can still run again, and an hour once every handler is done.

RQ delivers at least once: a retry after one handler failed, a replay from the failed
registry, a job retried after its worker died. Each handler's completion is written right
after it returns, and that write waits out a Redis restart or a full Redis (with backoff,
for up to ``REDIS_PATIENCE`` seconds) rather than fail: a handler runs again only if its
process dies, or Redis stays away longer than that, between its return and its record.
Handlers with external effects use ``task.delivery_id`` as the idempotency key in their own store.
"""

from __future__ import annotations

import logging
import time

import redis

from callback_server import defaults
from callback_server.times import stamp

log = logging.getLogger(__name__)

RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.OutOfMemoryError)
"""Redis errors that pass by themselves: a restart, a failover, a full Redis under noeviction."""

FIRST_BACKOFF = 0.1
"""Seconds before the first retry of an effects record write; doubled each time, up to MAX_BACKOFF."""

MAX_BACKOFF = 2.0
"""The longest wait between two tries of an effects record write."""


def effects_key(delivery_id: str) -> str:
    """The Redis hash of completed handlers for a delivery."""
    return f"{defaults.EFFECTS_PREFIX}:{delivery_id}"


class Effects:
    """Completed handlers of one delivery."""

    def __init__(
        self,
        connection: redis.Redis,
        delivery_id: str,
        ttl: int = defaults.EFFECTS_TTL,
        patience: float = defaults.REDIS_PATIENCE,
    ) -> None:
        self.connection = connection
        self.delivery_id = delivery_id
        self.key = effects_key(delivery_id)
        self.ttl = ttl
        self.patience = patience

    def completed(self) -> set[str]:
        """Names of the handlers already done (nothing has run yet, so a Redis error just fails the try)."""
        return {name.decode() for name in self.connection.hkeys(self.key)}

    def record(self, handler: str) -> None:
        """Mark a handler done, retrying with backoff while Redis is away or full (up to ``patience`` s).

        HSET and EXPIRE go in one MULTI/EXEC: one round trip, and repeating it is harmless,
        so a try whose reply was lost in a restart can simply be made again.
        """
        done_at = stamp()
        deadline = time.monotonic() + self.patience
        delay = FIRST_BACKOFF
        while True:
            try:
                with self.connection.pipeline(transaction=True) as pipe:
                    pipe.hset(self.key, handler, done_at)
                    pipe.expire(self.key, self.ttl)
                    pipe.execute()
                return
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    log.error(
                        "gave up recording a handler's completion: it will run again on the retry",
                        extra={"delivery_id": self.delivery_id, "handler": handler, "outcome": "unrecorded"},
                    )
                    raise
                log.warning(
                    "redis %s while recording a handler's completion; retrying in %.1f s",
                    type(exc).__name__,
                    delay,
                    extra={"delivery_id": self.delivery_id, "handler": handler, "outcome": "retrying"},
                )
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

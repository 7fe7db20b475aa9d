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
from workers.lease import Lease, LeaseLostError


def effects_key(delivery_id: str) -> str:
    """The Redis hash of completed handlers for a delivery."""
    return f"{defaults.EFFECTS_PREFIX}:{delivery_id}"


_RECORD = """
-- KEYS: effects hash, lease key ('' when unleased).  ARGV: handler, time, ttl, lease owner
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class Effects:
    """Completed handlers of one delivery, written only under the running worker's lease."""

    def __init__(
        self, connection: redis.Redis, delivery_id: str, ttl: int = defaults.EFFECTS_TTL, lease: Lease | None = None
    ) -> None:
        self.connection = connection
        self.key = effects_key(delivery_id)
        self.ttl = ttl
        self.lease = lease

    def completed(self) -> set[str]:
        """Names of the handlers already done; :class:`LeaseLostError` if our lease is gone."""
        pipe = self.connection.pipeline(transaction=False)
        pipe.hkeys(self.key)
        if self.lease is not None:
            pipe.get(self.lease.key)
        replies = pipe.execute()
        if self.lease is not None and (replies[1] or b"").decode() != self.lease.owner:
            self.lease.lost.set()
            raise LeaseLostError(f"lease on {self.lease.job_id} lapsed before its handlers ran")
        return {name.decode() for name in replies[0]}

    def record(self, handler: str) -> None:
        """Mark a handler done (one round trip); :class:`LeaseLostError` if our lease is gone."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        lease_key = self.lease.key if self.lease is not None else ""
        owner = self.lease.owner if self.lease is not None else ""
        if not self.connection.eval(_RECORD, 2, self.key, lease_key, handler, stamp, self.ttl, owner):
            assert self.lease is not None
            self.lease.lost.set()
            raise LeaseLostError(f"lease on {self.lease.job_id} lapsed while {handler} ran")

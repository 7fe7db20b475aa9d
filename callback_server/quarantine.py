"""Quarantine: authenticated deliveries that failed parsing or validation, kept for replay.

Scale would retry a rejected body 20 times and then drop it; a body we cannot read today
may be readable after a schema fix. So it is answered 200 and kept here, raw, with the
reason and time (never the key), until an operator replays or deletes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from callback_server import defaults
from callback_server.exceptions import NotFoundError

INDEX_KEY = defaults.QUARANTINE_PREFIX
"""Sorted set of quarantine ids, scored by the time they were (last) received."""


def _record_key(quarantine_id: str) -> str:
    return f"{defaults.QUARANTINE_PREFIX}:{quarantine_id}"


@dataclass(frozen=True)
class QuarantinedDelivery:
    """One kept body, how often it came, and why it was not accepted."""

    quarantine_id: str
    body: bytes
    reason: str
    details: Any
    mode: str
    content_type: str
    first_received_at: str
    last_received_at: str
    times_received: int

    def summary(self) -> dict[str, Any]:
        """What `quarantine list` prints: everything but the body."""
        return {
            "id": self.quarantine_id,
            "reason": self.reason,
            "mode": self.mode,
            "size": len(self.body),
            "first_received_at": self.first_received_at,
            "last_received_at": self.last_received_at,
            "times_received": self.times_received,
        }


class Quarantine:
    """The Redis store of quarantined deliveries."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def keep(self, body: bytes, *, reason: str, details: Any, mode: str, content_type: str) -> str:
        """Store a body (idempotently: the same bytes again only count up) and return its id."""
        quarantine_id = hashlib.sha256(body).hexdigest()[:24]
        key = _record_key(quarantine_id)
        now = datetime.now(UTC)
        stamp = now.isoformat(timespec="milliseconds")
        pipe = self.connection.pipeline(transaction=True)
        pipe.hsetnx(key, "first_received_at", stamp)
        pipe.hset(
            key,
            mapping={
                "body": body,
                "reason": reason,
                "details": json.dumps(details, default=str),
                "mode": mode,
                "content_type": content_type,
                "last_received_at": stamp,
            },
        )
        pipe.hincrby(key, "times_received", 1)
        pipe.zadd(INDEX_KEY, {quarantine_id: now.timestamp()})
        pipe.execute()
        return quarantine_id

    def ids(self, limit: int = 100) -> list[str]:
        """The newest quarantine ids first."""
        return [i.decode() for i in self.connection.zrevrange(INDEX_KEY, 0, max(limit, 1) - 1)]

    def count(self) -> int:
        """How many deliveries are quarantined."""
        return int(self.connection.zcard(INDEX_KEY))

    def get(self, quarantine_id: str) -> QuarantinedDelivery:
        """One quarantined delivery; :class:`NotFoundError` if there is none by that id."""
        raw = self.connection.hgetall(_record_key(quarantine_id))
        if not raw or b"body" not in raw:
            raise NotFoundError(f"no quarantined delivery with id {quarantine_id!r}")
        text = {k.decode(): v for k, v in raw.items()}
        return QuarantinedDelivery(
            quarantine_id=quarantine_id,
            body=text["body"],
            reason=text["reason"].decode(),
            details=json.loads(text["details"]),
            mode=text["mode"].decode(),
            content_type=text["content_type"].decode(),
            first_received_at=text["first_received_at"].decode(),
            last_received_at=text["last_received_at"].decode(),
            times_received=int(text["times_received"]),
        )

    def recent(self, limit: int = 100) -> list[QuarantinedDelivery]:
        """The newest quarantined deliveries first."""
        return [self.get(i) for i in self.ids(limit)]

    def delete(self, quarantine_id: str) -> None:
        """Forget a quarantined delivery (after a replay, or by an operator's decision)."""
        pipe = self.connection.pipeline(transaction=True)
        pipe.delete(_record_key(quarantine_id))
        pipe.zrem(INDEX_KEY, quarantine_id)
        deleted, _ = pipe.execute()
        if not deleted:
            raise NotFoundError(f"no quarantined delivery with id {quarantine_id!r}")

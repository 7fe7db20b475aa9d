"""Quarantine: authenticated deliveries that failed parsing or validation, kept for replay.

Scale would retry a rejected body 20 times and then drop it; a body we cannot read today
may be readable after a schema fix. So it is answered 200 and kept here, raw, with the
reason and time (never the key), until an operator replays or deletes it, or QUARANTINE_TTL
passes since it was last received.

What is stored is bounded whatever a sender makes the validator say: at most
``MAX_DETAIL_ENTRIES`` error messages and ``MAX_DETAILS_BYTES`` of details text, with a note of
how many were dropped, so a small body cannot become a large Redis value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from callback_server import defaults
from callback_server.exceptions import NotFoundError
from callback_server.times import stamp

INDEX_KEY = defaults.QUARANTINE_PREFIX
"""Sorted set of quarantine ids, scored by the time they were (last) received."""


MAX_DETAIL_ENTRIES = 50
"""Most validation messages kept per quarantined delivery; the rest are counted, not stored."""

MAX_DETAILS_BYTES = 8 * 1024
"""Most bytes of details (as JSON) kept per quarantined delivery."""

MAX_MESSAGE_CHARS = 500
"""Longest single validation message kept; a longer one is cut and marked."""

MAX_REASON_CHARS = 1000
"""Longest reason kept."""

TRUNCATED_KEY = "_truncated"
"""The key of the note, in capped details, saying how many messages were dropped."""

_Path = tuple[str | int, ...]


def _record_key(quarantine_id: str) -> str:
    return f"{defaults.QUARANTINE_PREFIX}:{quarantine_id}"


def _leaves(value: Any, path: _Path = ()) -> Iterator[tuple[_Path, Any]]:
    """Every message in a (nested) marshmallow error structure, with where it sits."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _short(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "... (cut)"


def _place(root: dict[str, Any] | list[Any], path: _Path, leaf: Any) -> None:
    """Put ``leaf`` at ``path`` inside ``root``, making the containers on the way (in order)."""
    node: Any = root
    step: Any
    for step, following in zip(path, (*path[1:], None), strict=True):
        child: Any = leaf if following is None else ({} if isinstance(following, str) else [])
        if isinstance(node, list):
            if step == len(node):
                node.append(child)
            node = node[step]
        else:
            node = node.setdefault(step, child)


def cap_details(details: Any) -> Any:
    """``details`` as it is when small; else its first messages within the limits, plus a note.

    The note (``_truncated``) says how many messages were kept and dropped. Messages are kept
    in the validator's order, each with the path it had, so what is shown reads like the original.
    """
    if not isinstance(details, dict | list | tuple):
        text = _short(details) if details is not None else None
        return text
    root: dict[str, Any] | list[Any] = {} if isinstance(details, dict) else []
    kept = dropped = 0
    size = 2
    for path, leaf in _leaves(details):
        if kept >= MAX_DETAIL_ENTRIES:
            dropped += 1
            continue
        leaf = _short(leaf)
        cost = len(json.dumps([path, leaf], default=str)) + 2
        if size + cost > MAX_DETAILS_BYTES - 200:  # room for the note
            dropped += 1
            continue
        if path:
            _place(root, path, leaf)
        elif isinstance(root, list):
            root.append(leaf)
        else:
            root["_schema"] = [leaf]
        kept += 1
        size += cost
    if dropped:
        note = (
            f"{dropped} more validation messages dropped (kept {kept}: at most {MAX_DETAIL_ENTRIES} "
            f"messages and {MAX_DETAILS_BYTES} bytes are stored)"
        )
        if isinstance(root, dict):
            root[TRUNCATED_KEY] = note
        else:
            root.append({TRUNCATED_KEY: note})
    return root


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
    expires_in: int | None = None
    """Seconds until Redis forgets it (``None``: no expiry, e.g. kept before QUARANTINE_TTL existed)."""
    size: int = -1
    """The body's length in bytes (set by :meth:`Quarantine.summaries`, which leaves ``body`` empty)."""

    @property
    def expires_at(self) -> str | None:
        """When it will be forgotten, ISO 8601 UTC (as of reading it)."""
        if self.expires_in is None:
            return None
        return stamp(datetime.now(UTC) + timedelta(seconds=self.expires_in), timespec="seconds")

    def summary(self) -> dict[str, Any]:
        """What `quarantine list` prints: everything but the body."""
        return {
            "id": self.quarantine_id,
            "reason": self.reason,
            "mode": self.mode,
            "size": self.size if self.size >= 0 else len(self.body),
            "first_received_at": self.first_received_at,
            "last_received_at": self.last_received_at,
            "times_received": self.times_received,
            "expires_in": self.expires_in,
            "expires_at": self.expires_at,
        }


SUMMARY_FIELDS = (
    "reason",
    "details",
    "mode",
    "content_type",
    "first_received_at",
    "last_received_at",
    "times_received",
)
"""A record's fields but its body."""


def _restore(quarantine_id: str, text: dict[str, Any], ttl: Any) -> QuarantinedDelivery:
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
        expires_in=int(ttl) if ttl is not None and int(ttl) >= 0 else None,
    )


class Quarantine:
    """The Redis store of quarantined deliveries; each is forgotten ``ttl`` seconds after it last came."""

    def __init__(self, connection: redis.Redis, ttl: int = defaults.QUARANTINE_TTL) -> None:
        self.connection = connection
        self.ttl = ttl

    def keep(self, body: bytes, *, reason: str, details: Any, mode: str, content_type: str) -> str:
        """Store a body (idempotently: the same bytes again only count up) and return its id."""
        quarantine_id = hashlib.sha256(body).hexdigest()[:24]
        key = _record_key(quarantine_id)
        now = datetime.now(UTC)
        received = stamp(now)
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS] + "... (cut)"
        pipe = self.connection.pipeline(transaction=True)
        pipe.hsetnx(key, "first_received_at", received)
        pipe.hset(
            key,
            mapping={
                "body": body,
                "reason": reason,
                "details": json.dumps(cap_details(details), default=str),
                "mode": mode,
                "content_type": content_type,
                "last_received_at": received,
            },
        )
        pipe.hincrby(key, "times_received", 1)
        pipe.expire(key, self.ttl)
        pipe.zadd(INDEX_KEY, {quarantine_id: now.timestamp()})
        # The index is scored by last receipt, as the record's expiry counts from it: ids older
        # than the TTL name records Redis has already forgotten.
        pipe.zremrangebyscore(INDEX_KEY, "-inf", f"({now.timestamp() - self.ttl}")
        pipe.execute()
        return quarantine_id

    def _oldest_live_score(self) -> float:
        return datetime.now(UTC).timestamp() - self.ttl

    def ids(self, limit: int = 100) -> list[str]:
        """The newest quarantine ids first (past their retention excluded)."""
        found = self.connection.zrevrangebyscore(
            INDEX_KEY, "+inf", self._oldest_live_score(), start=0, num=max(limit, 1)
        )
        return [i.decode() for i in found]

    def count(self) -> int:
        """How many deliveries are quarantined (past their retention excluded)."""
        return int(self.connection.zcount(INDEX_KEY, self._oldest_live_score(), "+inf"))

    def get(self, quarantine_id: str) -> QuarantinedDelivery:
        """One quarantined delivery; :class:`NotFoundError` if there is none by that id."""
        pipe = self.connection.pipeline(transaction=False)
        pipe.hgetall(_record_key(quarantine_id))
        pipe.ttl(_record_key(quarantine_id))
        raw, ttl = pipe.execute()
        if not raw or b"body" not in raw:
            raise NotFoundError(f"no quarantined delivery with id {quarantine_id!r}")
        return _restore(quarantine_id, {k.decode(): v for k, v in raw.items()}, ttl)

    def summaries(self, limit: int = 100) -> list[QuarantinedDelivery]:
        """The newest quarantined deliveries first, each without its body (its size instead): one pipeline.

        A list shows no body, and each may be megabytes: none is read.
        """
        ids = self.ids(limit)
        pipe = self.connection.pipeline(transaction=False)
        for quarantine_id in ids:
            pipe.hmget(_record_key(quarantine_id), *SUMMARY_FIELDS)
            pipe.hstrlen(_record_key(quarantine_id), "body")
            pipe.ttl(_record_key(quarantine_id))
        replies = pipe.execute()
        found = []
        for index, quarantine_id in enumerate(ids):
            values, size, ttl = replies[3 * index : 3 * index + 3]
            if not size or any(v is None for v in values):
                continue  # expired meanwhile
            fields = {**dict(zip(SUMMARY_FIELDS, values, strict=True)), "body": b""}
            found.append(replace(_restore(quarantine_id, fields, ttl), size=int(size)))
        return found

    def recent(self, limit: int = 100) -> list[QuarantinedDelivery]:
        """The newest quarantined deliveries first (one that expired meanwhile is skipped)."""
        found = []
        for quarantine_id in self.ids(limit):
            try:
                found.append(self.get(quarantine_id))
            except NotFoundError:
                continue
        return found

    def note_reason(self, quarantine_id: str, reason: str) -> None:
        """Replace a kept body's reason (a replay that failed says why); nothing if it is gone."""
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS] + "... (cut)"
        key = _record_key(quarantine_id)
        if self.connection.exists(key):
            self.connection.hset(key, "reason", reason)

    def delete(self, quarantine_id: str) -> None:
        """Forget a quarantined delivery (after a replay, or by an operator's decision)."""
        pipe = self.connection.pipeline(transaction=True)
        pipe.delete(_record_key(quarantine_id))
        pipe.zrem(INDEX_KEY, quarantine_id)
        deleted, _ = pipe.execute()
        if not deleted:
            raise NotFoundError(f"no quarantined delivery with id {quarantine_id!r}")

"""The test handler modules under tests/workers/, by the dotted names workers import them by, and
what they note in Redis.

Those modules stay in tests/workers/: real worker processes import them through CALLBACK_HANDLERS,
and their dotted names are stored in the ledger and asserted on. A test names them, never imports
them (importing would register their handlers in the test's own process).
"""

from __future__ import annotations

import redis

RECORDING = "tests.workers.recording_handlers"
"""Handlers of every type that note each run, and fail, hang or crash when a Redis key says so."""

EFFECTS = "test:effects"
"""The recording handlers' list of "handler:delivery_id" for every completed run."""


def effects(conn: redis.Redis, key: str = EFFECTS) -> list[str]:
    """What the recording handlers noted, in order."""
    return [item.decode() for item in conn.lrange(key, 0, -1)]

"""A reconciliation run asked for from the console, carried out by the clock process.

A run takes minutes of API calls, far past a web request's time, so the console only raises a
flag in Redis; the clock (``reconcile --schedule``) looks for it every :data:`POLL_INTERVAL`
seconds while it waits for its next run, runs at once when it finds one, and writes back how
it went, which the console shows.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from callback_server.times import stamp

REQUEST_KEY = "scb:reconcile:request"
"""The flag: present while a run is asked for and not yet started (its value: who asked, when)."""

STATUS_KEY = "scb:reconcile:request_status"
"""Hash: what became of the latest request (requested, running, done), its run id and summary line."""

POLL_INTERVAL = 2.0
"""Seconds between the clock's looks at the flag while it waits."""

COOLDOWN_KEY = "scb:reconcile:request_cooldown"
"""Present for :data:`COOLDOWN` seconds after a request: no other may be made meanwhile."""

COOLDOWN = 300
"""Seconds between two requested runs: each lists every project's recent tasks from Scale's API."""

REQUEST_TTL = 24 * 3600
"""A request no clock picks up within a day is dropped (the console says none is running)."""


def _stamp() -> str:
    return stamp(timespec="seconds")


class RunRequests:
    """The flag and its status, read and written by the console and the clock."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def request(self, by: str) -> bool:
        """Ask for a run; False when one is already asked for and not started, or within the cooldown."""
        asked = _stamp()
        if self.cooldown_left():
            return False
        if not self.connection.set(REQUEST_KEY, json.dumps({"requested_at": asked, "by": by}), nx=True, ex=REQUEST_TTL):
            return False
        self.connection.set(COOLDOWN_KEY, asked, ex=COOLDOWN)
        pipe = self.connection.pipeline(transaction=False)
        pipe.delete(STATUS_KEY)
        pipe.hset(STATUS_KEY, mapping={"state": "requested", "requested_at": asked})
        pipe.expire(STATUS_KEY, REQUEST_TTL * 7)
        pipe.execute()
        return True

    def pending(self) -> bool:
        """Whether a run is asked for and not started yet."""
        return bool(self.connection.exists(REQUEST_KEY))

    def cooldown_left(self) -> int:
        """Seconds before another run may be asked for (0: now)."""
        return max(int(self.connection.ttl(COOLDOWN_KEY)), 0)

    def take(self) -> bool:
        """Take the flag if it is up (the clock, about to run); True if there was one."""
        if self.connection.getdel(REQUEST_KEY) is None:
            return False
        self.connection.hset(STATUS_KEY, mapping={"state": "running", "started_at": _stamp()})
        return True

    def finished(self, run_id: str | None, line: str) -> None:
        """Record how the requested run went (``run_id`` None: it could not run, ``line`` says why)."""
        self.connection.hset(
            STATUS_KEY, mapping={"state": "done", "finished_at": _stamp(), "run_id": run_id or "", "result": line}
        )

    def status(self) -> dict[str, Any]:
        """The latest request's fields (empty when none was made)."""
        return {k.decode(): v.decode("utf-8", "replace") for k, v in self.connection.hgetall(STATUS_KEY).items()}

    def wait(self, seconds: float, poll: float = POLL_INTERVAL) -> bool:
        """Sleep up to ``seconds``, looking for a request every ``poll`` s; True if one was taken."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.take():
                    return True
            except redis.RedisError:
                pass  # the scheduled run is still due; Redis errors are the run's to report
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll, left))

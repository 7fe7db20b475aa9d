"""The lease on a running job: who runs it, for how long, and the fence that stops a lost run.

A CallbackWorker holds ``scb:lease:<job id>`` (value: its name, expiring after three
heartbeats) while it runs a job, and renews it every heartbeat. Expiry is Redis's own
clock, so workers on machines with skewed clocks agree on it. A job whose lease is gone is
recoverable; recovery, renewal and each handler's completion record all check the lease in
the same Lua call, so a stalled worker that lost its lease cannot renew it back nor record
work it no longer owns, and stops before its next handler.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis

LEASE_PREFIX = "scb:lease"
"""Redis key prefix of job leases."""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LeaseLostError(Exception):
    """This worker's lease on the job lapsed and the job may run elsewhere: stop, record nothing."""


def lease_key(job_id: str) -> str:
    """The lease key of a job."""
    return f"{LEASE_PREFIX}:{job_id}"


@dataclass
class Lease:
    """One worker's hold on one running job."""

    job_id: str
    owner: str
    ttl_ms: int
    lost: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> str:
        """The Redis key of this lease."""
        return lease_key(self.job_id)

    def take(self, connection: redis.Redis) -> None:
        """Hold the lease (unconditionally: the job was just dequeued by this worker)."""
        connection.set(self.key, self.owner, px=self.ttl_ms)

    def renew(self, connection: redis.Redis) -> bool:
        """Extend the lease if still ours; a False marks it lost for good."""
        if connection.eval(_RENEW, 1, self.key, self.owner, self.ttl_ms):
            return True
        self.lost.set()
        return False

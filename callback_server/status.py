"""One status snapshot of a deployment, read alike by ``/metrics``, the console and ``doctor``.

Queue depth and the age of its head, RQ's registries, the quarantine and unhandled notes, the
workers, Redis memory against ``maxmemory``, the counters and the latest reconciliation runs:
two pipelined round trips, no cleanup and no writes (RQ's ``Worker.all`` deletes the names of
dead workers; reading the status never does).

One rule says which worker is live (:func:`worker_is_live`): its registration key still exists.
RQ writes that key with the worker's TTL (``WORKER_MAINTENANCE_INTERVAL`` + 15 s, refreshed at
every heartbeat) and it expires when the worker stops beating; a name still in the registration
set without its key is a worker that died (*lapsed*).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from callback_server import defaults, stats
from callback_server.config import Settings
from callback_server.connection import memory_is_high
from callback_server.quarantine import INDEX_KEY as QUARANTINE_INDEX_KEY
from callback_server.reconcile import RUNS_KEY
from callback_server.times import parse_instant

RUNS_READ = 50
"""Run summaries a snapshot reads: enough to find each project's latest."""


def worker_is_live(registration: Mapping[Any, Any] | int | bool) -> bool:
    """The one rule for a live worker: its registration key exists (a hash read from it, or EXISTS)."""
    return bool(registration)


@dataclass(frozen=True)
class Status:
    """What a deployment's Redis says about it, at one moment."""

    queue: str
    depth: int
    oldest_enqueued_at: float | None
    running: int
    scheduled: int
    failed: int
    workers: int
    """Live workers on the queue (:func:`worker_is_live`)."""
    workers_lapsed: int
    """Names registered on the queue whose key expired: workers that died without signing off."""
    memory_used: int
    memory_limit: int
    """Redis ``maxmemory`` in bytes (0: no limit)."""
    memory_policy: str
    quarantined: int
    unhandled_kept: int
    counters: Mapping[str, float]
    runs: list[dict[str, Any]]
    """The latest reconciliation runs' summaries, newest first, as stored."""
    now: float

    @property
    def oldest_age(self) -> float | None:
        """Seconds the job at the head of the queue has waited (None: the queue is empty)."""
        return None if self.oldest_enqueued_at is None else max(0.0, self.now - self.oldest_enqueued_at)

    @property
    def memory_high(self) -> bool:
        """Memory past the headroom warning of ``maxmemory`` (at the limit, every callback is a 503)."""
        return memory_is_high(self.memory_used, self.memory_limit)

    @property
    def evicts(self) -> bool:
        """Redis may evict keys, jobs included (anything but ``noeviction``)."""
        return self.memory_policy not in ("noeviction", "")


def read_status(connection: redis.Redis, settings: Settings) -> Status:
    """The status of CALLBACK_QUEUE and its Redis, in two pipelined round trips (no cleanup, no writes)."""
    queue_name = settings.callback_queue
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    pipe = connection.pipeline(transaction=False)
    pipe.hgetall(stats.TOTAL_KEY)
    pipe.llen(queue.key)
    pipe.lindex(queue.key, 0)
    for registry in (StartedJobRegistry, ScheduledJobRegistry, FailedJobRegistry):
        pipe.zcard(registry(queue=queue).key)
    pipe.smembers(WORKERS_BY_QUEUE_KEY % queue_name)
    pipe.info("memory")
    # As Quarantine.count: entries past QUARANTINE_TTL (pruned at the next keep) are not counted.
    pipe.zcount(QUARANTINE_INDEX_KEY, time.time() - settings.quarantine_ttl, "+inf")
    pipe.llen(defaults.UNHANDLED_KEY)
    pipe.lrange(RUNS_KEY, 0, RUNS_READ - 1)
    total, depth, head, running, scheduled, failed, worker_keys, memory, quarantined, unhandled, raw_runs = (
        pipe.execute()
    )
    # Second trip: the oldest job's enqueue time, and which registered workers still have their key.
    keys = sorted(worker_keys)
    pipe = connection.pipeline(transaction=False)
    if head is not None:
        pipe.hget(queue.job_class.key_for(head.decode()), "enqueued_at")
    for key in keys:
        pipe.exists(key)
    answers = pipe.execute() if (head is not None or keys) else []
    oldest = None
    if head is not None:
        enqueued = answers.pop(0)
        enqueued_at = parse_instant(enqueued)
        oldest = enqueued_at.timestamp() if enqueued_at is not None else None
    live = sum(1 for exists in answers if worker_is_live(exists))
    runs = []
    for raw in raw_runs:
        try:
            runs.append(json.loads(raw))
        except ValueError:
            continue  # an unreadable summary is skipped, not a failed read
    return Status(
        queue=queue_name,
        depth=int(depth),
        oldest_enqueued_at=oldest,
        running=int(running),
        scheduled=int(scheduled),
        failed=int(failed),
        workers=live,
        workers_lapsed=len(keys) - live,
        memory_used=int(memory.get("used_memory", 0)),
        memory_limit=int(memory.get("maxmemory", 0) or 0),
        memory_policy=str(memory.get("maxmemory_policy", "")),
        quarantined=int(quarantined),
        unhandled_kept=int(unhandled),
        counters={name.decode(): float(value) for name, value in total.items()},
        runs=runs,
        now=time.time(),
    )

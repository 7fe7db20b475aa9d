"""Jobs that RQ's bookkeeping left in no list or registry while Redis refused writes, queued again.

A delivery answered ``queued`` is a job hash plus a place in the queue. Under a full Redis
(``maxmemory`` with ``noeviction``), Redis refuses writes that add memory but still allows those
that remove it, and RQ 3's maintenance can do one of each in turn: ``IntermediateQueue.cleanup``
records a stuck job's failure (refused, and only logged) and then removes it from the intermediate
list (allowed). The job is then in no list or registry, its identity is remembered, the reconciler
counts it "already had", and nothing would ever run it.

The sweep looks at every job hash, and the :data:`~callback_server.scripts.RESCUE` script queues
again any that is in none of the queue, the intermediate list and the started, scheduled, failed
and deferred registries, on a second look at least :data:`ORPHAN_GRACE` seconds after the first.
Its retries are left as they were: a refused write is not the handler's failure. One worker
sweeps at a time, every :data:`RESCUE_INTERVAL` seconds, from its maintenance.
"""

from __future__ import annotations

import logging
import time

import redis
from rq import Queue

from callback_server import scripts

log = logging.getLogger(__name__)

RESCUE_INTERVAL = 30
"""Seconds between sweeps (across all workers: a lock lets one of them sweep)."""

ORPHAN_GRACE = 10
"""Seconds a job must stay in no list or registry, from one sweep to a later one, before it is queued again."""

LOCK_KEY = "scb:rescue:lock"
JOB_PREFIX = "rq:job:"
SCAN_COUNT = 1000


def job_ids(connection: redis.Redis) -> list[str]:
    """The id of every job hash (``rq:job:<id>``, not the keys RQ keeps beside it)."""
    ids = []
    for key in connection.scan_iter(match=f"{JOB_PREFIX}*", count=SCAN_COUNT, _type="hash"):
        rest = (key.decode() if isinstance(key, bytes) else key)[len(JOB_PREFIX) :]
        if ":" not in rest:
            ids.append(rest)
    return ids


def rescue_orphans(queue: Queue, *, now: float | None = None, grace: float = ORPHAN_GRACE) -> list[str]:
    """Queue again each job of ``queue``'s connection that is in no list or registry; the ids queued."""
    connection = queue.connection
    script = connection.register_script(scripts.RESCUE)
    moment = time.time() if now is None else now
    registries = (
        queue.started_job_registry.key,
        queue.scheduled_job_registry.key,
        queue.failed_job_registry.key,
        queue.deferred_job_registry.key,
    )
    rescued = []
    for job_id in job_ids(connection):
        keys, args = scripts.rescue_call(
            job=f"{JOB_PREFIX}{job_id}",
            queue=queue.key,
            intermediate=queue.intermediate_queue_key,
            registries=registries,
            job_id=job_id,
            now=moment,
            grace=grace,
            queue_name=queue.name,
        )
        if script(keys=keys, args=args):
            rescued.append(job_id)
            log.warning(
                "job was in no list or registry (a write refused by Redis); queued again",
                extra={"delivery_id": job_id, "outcome": "rescued"},
            )
    return rescued


def sweep_if_due(queue: Queue, interval: int = RESCUE_INTERVAL) -> list[str]:
    """One sweep, if no worker swept within ``interval`` seconds; nothing while Redis refuses writes."""
    try:
        if not queue.connection.set(LOCK_KEY, "1", nx=True, ex=interval):
            return []
        return rescue_orphans(queue)
    except redis.exceptions.OutOfMemoryError:
        return []  # the next maintenance tries again; a full Redis cannot take the job back anyway

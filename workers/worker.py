"""The worker: RQ's in-process ``SimpleWorker``, made crash-safe with a short heartbeat lease.

Why not RQ's default forking ``Worker``: a fork per job caps it near 100 jobs/s on this kind
of machine, and callbacks are many small jobs. Running jobs in-process is ~3x faster, but a
worker SIGKILLed mid-job (Heroku kills 30 s after SIGTERM) would leave its job "started"
until ``HANDLER_TIMEOUT`` + 60 s had passed and RQ's next cleanup (10 minutes) ran.

So while a job runs, a thread renews a short lease on it (``WORKER_HEARTBEAT`` seconds,
expiring after three missed beats), and every worker checks for expired leases every few
seconds and at start: a job whose worker died is pushed back to the front of its queue
without spending one of its retries. The handler effects record then skips the handlers
that had completed. Bound: a killed job runs again within 3 x WORKER_HEARTBEAT +
2 x WORKER_HEARTBEAT seconds (25 s by default) of the kill, provided a worker is running.

One queue per worker: RQ's crash-safe dequeue (BLMOVE into an intermediate list) needs it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import redis
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, WorkerStatus

from callback_server.config import Settings
from callback_server.connection import connect, warn_if_evicting
from callback_server.logs import configure_logging
from workers import dispatch
from workers.registry import import_handler_modules

log = logging.getLogger(__name__)


_REQUEUE_ABANDONED = """
-- KEYS: started registry, queue, job key.  ARGV: registry member, job id
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[3], 'status') ~= 'started' then return 0 end
redis.call('HSET', KEYS[3], 'status', 'queued')
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
"""


class CallbackWorker(SimpleWorker):
    """A SimpleWorker whose running job holds a short, renewed lease (see the module docstring)."""

    def __init__(self, *args: Any, heartbeat_interval: float = 5.0, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        # Check for abandoned jobs every two heartbeats (RQ's default is every 10 minutes).
        kwargs.setdefault("maintenance_interval", max(1, math.ceil(2 * heartbeat_interval)))
        super().__init__(*args, **kwargs)
        if len(self.queues) != 1:
            raise ValueError("CallbackWorker takes exactly one queue: crash-safe dequeue needs it")
        self.heartbeat_interval = heartbeat_interval
        self.lease = math.ceil(3 * heartbeat_interval)
        self._requeue = self.connection.register_script(_REQUEUE_ABANDONED)

    @property
    def dequeue_timeout(self) -> int:
        """Wake from an idle wait for each maintenance round: RQ's default blocks for 6.75 minutes."""
        return int(self.maintenance_interval)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The lease on a running job: three heartbeats long."""
        return self.lease

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job in this process while a thread renews its lease."""
        execution = self.prepare_execution(job)
        finished = threading.Event()
        beat = threading.Thread(target=self._renew_lease, args=(job, execution, finished), daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            finished.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def _renew_lease(self, job: Job, execution: Execution, finished: threading.Event) -> None:
        while not finished.wait(self.heartbeat_interval):
            try:
                self.maintain_heartbeats(job, execution)
            except redis.RedisError:
                # Redis is away: the lease may lapse and the job be recovered elsewhere,
                # which the effects record makes safe. Keep trying until the job ends.
                log.warning("could not renew job lease", extra={"outcome": "lease_missed"})

    def clean_registries(self) -> None:
        """Recover jobs whose worker died, then RQ's own cleanup."""
        for queue in self.queues:
            self.requeue_abandoned(queue)
        super().clean_registries()

    def requeue_abandoned(self, queue: Queue) -> list[str]:
        """Put jobs with an expired lease back at the front of the queue; return their ids."""
        registry = queue.started_job_registry
        members = self.connection.zrangebyscore(registry.key, 0, time.time())
        recovered = []
        for member in members:
            member_text = member.decode() if isinstance(member, bytes) else member
            job_id = registry.parse_job_id(member)
            if self._requeue(keys=[registry.key, queue.key, Job.key_for(job_id)], args=[member_text, job_id]):
                recovered.append(job_id)
                log.warning(
                    "recovered a job whose worker died mid-run",
                    extra={"delivery_id": job_id, "outcome": "recovered"},
                )
        return recovered


def build_worker(settings: Settings, connection: redis.Redis | None = None, **kwargs: Any) -> CallbackWorker:
    """A worker on the callback queue, with handler modules imported and effects TTL applied."""
    import_handler_modules(settings.callback_handlers)
    dispatch.effects_ttl = settings.effects_ttl
    connection = connection if connection is not None else connect(settings, blocking=True)
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
    return CallbackWorker(
        [queue], connection=connection, heartbeat_interval=settings.heartbeat_interval, **kwargs
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m workers``: one worker with RQ's scheduler (for delayed retries), until SIGTERM."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: host and pid)")
    parser.add_argument("--no-scheduler", action="store_true", help="do not run RQ's scheduler for retries")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings.from_env()
    worker = build_worker(settings, name=args.name)
    warn_if_evicting(worker.connection)
    log.info("worker starting", extra={"count": len(dispatch.registry.task_types())})
    worker.work(burst=args.burst, with_scheduler=not args.no_scheduler, logging_level="WARNING")
    return 0

"""The worker: RQ's in-process ``SimpleWorker``, made crash-safe with a short heartbeat lease.

Why not RQ's default forking ``Worker``: a fork per job caps it near 100 jobs/s on this kind
of machine, and callbacks are many small jobs. Running jobs in-process is ~3x faster, but a
worker SIGKILLed mid-job (Heroku kills 30 s after SIGTERM) would leave its job "started"
until ``HANDLER_TIMEOUT`` + 60 s had passed and RQ's next cleanup (10 minutes) ran.

So while a job runs, it holds a lease in Redis (``scb:lease:<job>``, three heartbeats long,
see :mod:`workers.lease`) that a thread renews every ``WORKER_HEARTBEAT`` seconds. Every
worker looks for started jobs whose lease is gone every two heartbeats and at start, and
puts them back on the queue without spending a retry; the handler effects record then skips
the handlers that had completed. Bound: a killed job is queued again within 3 + 2 heartbeats
(25 s by default) of the kill, provided a worker is running. A job whose worker died
MAX_RECOVERIES + 1 times is failed instead: it is probably what kills them.

A worker that merely stalled past its lease (Redis unreachable for a whole lease) is fenced:
its renewals and completion records check the lease, so it stops before its next handler and
records nothing; only the handler in flight at that moment can run twice.

One queue per worker: RQ's crash-safe dequeue (BLMOVE into an intermediate list) needs it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, worker_registration
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from callback_server.config import Settings
from callback_server.connection import connect, warn_if_evicting
from callback_server.logs import configure_logging
from workers import dispatch
from workers.lease import Lease, LeaseLostError, lease_key
from workers.registry import import_handler_modules

log = logging.getLogger(__name__)


MAX_RECOVERIES = 3
"""A job whose worker died this many times is failed, not run again: it is probably what kills it."""

_RECOVER = """
-- KEYS: started registry, queue, job hash, lease.  ARGV: registry member, job id, max recoveries
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('HGET', KEYS[3], 'status') ~= 'started' then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[3], 'scb_recoveries', 1) > tonumber(ARGV[3]) then return 2 end
redis.call('HSET', KEYS[3], 'status', 'queued')
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
"""


class CallbackWorker(SimpleWorker):
    """A SimpleWorker whose running job holds a renewed, fenced lease (see the module docstring)."""

    def __init__(self, *args: Any, heartbeat_interval: float = 5.0, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        # Check for abandoned jobs every two heartbeats (RQ's default is every 10 minutes).
        kwargs.setdefault("maintenance_interval", max(1, math.ceil(2 * heartbeat_interval)))
        super().__init__(*args, **kwargs)
        if len(self.queues) != 1:
            raise ValueError("CallbackWorker takes exactly one queue: crash-safe dequeue needs it")
        self.heartbeat_interval = heartbeat_interval
        self.lease_seconds = math.ceil(3 * heartbeat_interval)
        self._lease_connection = _short_timeout_client(self.connection, timeout=min(2.0, heartbeat_interval))
        self._running: tuple[Lease, Job, Execution] | None = None
        self._running_lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    @property
    def dequeue_timeout(self) -> int:
        """Wake from an idle wait for each maintenance round: RQ's default blocks for 6.75 minutes."""
        return int(self.maintenance_interval)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long the worker and its execution count as alive without a heartbeat: one lease."""
        return self.lease_seconds

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job in this process under a lease that the renewal thread keeps alive."""
        lease = Lease(job.id, self.name, self.lease_seconds * 1000)
        lease.take(self.connection)
        execution = self.prepare_execution(job)
        self._start_renewer()
        with self._running_lock:
            self._running = (lease, job, execution)
        dispatch.current_lease = lease
        try:
            self.perform_job(job, queue, execution)
        finally:
            dispatch.current_lease = None
            with self._running_lock:
                self._running = None
        # The lease is left to expire rather than deleted: one round trip less per job, and a
        # finished job is never recovered (recovery requires the status "started").
        self.set_state(WorkerStatus.IDLE)

    def _start_renewer(self) -> None:
        if self._renewer is None or not self._renewer.is_alive():
            self._renewer = threading.Thread(target=self._renew_forever, name="lease-renewer", daemon=True)
            self._renewer.start()

    def _renew_forever(self) -> None:
        """Every heartbeat, renew the running job's lease, the worker's and the execution's heartbeats."""
        while True:
            time.sleep(self.heartbeat_interval)
            with self._running_lock:
                if self._running is None:
                    continue
                lease, job, execution = self._running
                if lease.lost.is_set():
                    continue
                try:
                    if not lease.renew(self._lease_connection):
                        log.error("lost the lease on a running job; it stops at its next handler",
                                  extra={"delivery_id": job.id, "outcome": "lease_lost"})
                        continue
                    pipe = self._lease_connection.pipeline(transaction=False)
                    self.heartbeat(self.lease_seconds, pipeline=pipe)
                    execution.heartbeat(job.started_job_registry, self.lease_seconds, pipe)
                    pipe.execute()
                except Exception:
                    # Keep trying: a renewal that fails for a whole lease lets the job be recovered
                    # elsewhere, and the fence then stops this run before its next handler.
                    log.warning("could not renew a job lease", exc_info=True, extra={"delivery_id": job.id})

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: Any) -> None:
        """A run that lost its lease leaves the job to whoever recovered it: no failure, no retry."""
        if exc_info[0] is not None and issubclass(exc_info[0], LeaseLostError):
            log.warning("stopped a run whose lease lapsed; the recovered run carries on",
                        extra={"delivery_id": job.id, "outcome": "fenced"})
            return
        super()._finalize_failure(job, queue, execution, exc_info)

    def clean_registries(self) -> None:
        """Recover jobs whose worker died, then RQ's cleanups except its own abandoned-job pass.

        RQ's StartedJobRegistry.cleanup would spend a retry (and delay the job) or fail it; the
        lease-based recovery here replaces it. A Redis error is logged, not fatal: RQ would end
        the worker on it, and maintenance runs often.
        """
        try:
            for queue in self.queues:
                self.recover_abandoned(queue)
                if queue.acquire_maintenance_lock():
                    try:
                        for registry in (queue.finished_job_registry, queue.failed_job_registry,
                                         queue.deferred_job_registry):
                            registry.cleanup()
                        worker_registration.clean_worker_registry(queue)
                        queue.intermediate_queue.cleanup(self, queue)
                    finally:
                        queue.release_maintenance_lock()
        except redis.RedisError as exc:
            log.warning("maintenance skipped: redis error %s", type(exc).__name__, extra={"outcome": "skipped"})
        self.last_cleaned_at = now()  # type: ignore[assignment]

    def recover_abandoned(self, queue: Queue) -> list[str]:
        """Requeue jobs whose lease is gone (at the back); fail those that keep killing workers."""
        registry = queue.started_job_registry
        recovered = []
        for member in self.connection.zrange(registry.key, 0, -1):
            member_text = member.decode() if isinstance(member, bytes) else member
            job_id = registry.parse_job_id(member)
            keys = [registry.key, queue.key, Job.key_for(job_id), lease_key(job_id)]
            outcome = self.connection.eval(_RECOVER, 4, *keys, member_text, job_id, MAX_RECOVERIES)
            if outcome == 1:
                recovered.append(job_id)
                log.warning("recovered a job whose worker died mid-run",
                            extra={"delivery_id": job_id, "outcome": "recovered"})
            elif outcome == 2:
                self._fail_poison(queue, job_id)
        return recovered

    def _fail_poison(self, queue: Queue, job_id: str) -> None:
        job = queue.fetch_job(job_id)
        if job is None:
            return
        reason = (f"its worker died {MAX_RECOVERIES + 1} times while running it (out of memory? a crash in "
                  "native code?): failed instead of run again")
        with self.connection.pipeline() as pipe:
            record_job_failure(job, reason, pipe)
            pipe.execute()
        log.error("failed a job that keeps killing workers", extra={"delivery_id": job_id, "outcome": "failed"})


def _short_timeout_client(connection: redis.Redis, timeout: float) -> redis.Redis:
    """A client on the same server whose commands give up fast and never retry (for lease renewal)."""
    pool = connection.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": timeout, "socket_connect_timeout": timeout,
              "retry": Retry(NoBackoff(), 0)}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


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

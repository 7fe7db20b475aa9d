"""The worker: RQ's own forking ``Worker``, configured for prompt recovery, kept running through Redis outages.

Crash safety is RQ's. The worker process forks a work horse per job and heartbeats the job
every ``WORKER_HEARTBEAT`` seconds while the horse runs it, so a stalled handler cannot
starve the heartbeat. The horse gets ``JobTimeoutException`` at ``HANDLER_TIMEOUT``; if that
does not stop it (a handler that swallows it, or one stuck in C code holding the GIL, where no
Python signal handler runs), :class:`HandlerDeathPenalty` ends the horse ``HANDLER_KILL_GRACE``
seconds later from a C watchdog thread. A horse that dies fails its try, and the job is
retried through its ``Retry``. If the whole worker dies (a dyno SIGKILL), the job's heartbeat
stops; 60 s plus one heartbeat later its started-registry entry expires, and the next
maintenance pass of any worker (``StartedJobRegistry.cleanup``, every
``WORKER_MAINTENANCE_INTERVAL`` seconds) retries it, spending a retry, or fails it when none is
left. Completed handlers are skipped on every re-run (see :mod:`workers.effects`).

Nothing of RQ is replaced: the worker is configured (intervals, TTL, the death penalty
class) and wrapped from the outside; its one addition is that a success first forgets the
tries of workers that died (:func:`forget_dead_tries`, around an RQ 3.0 bug). RQ's work loop
quits on a Redis error it does not expect (a full Redis refusing writes, an outage outlasting a
command's retries, a failed registration);
:func:`run_supervised` starts it again with backoff, so a worker rides out an outage and carries
on by itself once Redis has room. Its Redis client retries a dropped connection for a few seconds,
so a short Redis restart passes unnoticed.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
import time
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import click
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.worker_pool import WorkerPool

from callback_server import defaults, ledger
from callback_server.config import Settings
from callback_server.connection import connect, warn_if_evicting
from callback_server.exceptions import CallbackServerError, FailureNotRecordedError
from callback_server.logs import configure_logging
from callback_server.sentry import init_sentry
from workers import dispatch, rescue
from workers.listing import log_handlers
from workers.registry import import_handler_modules, registry

log = logging.getLogger(__name__)

DEQUEUE_MARGIN = 15
"""RQ waits on the queue for ``worker_ttl - 15`` s; the worker TTL is set so that wait is one maintenance interval."""

COMMAND_RETRIES = 8
"""Tries of a Redis command after a dropped connection (0.2 s, 0.4 s ... 2 s apart: about 11 s in all)."""


class HandlerDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM timeout, backed by a kill that needs neither the GIL nor the handler's consent.

    At the timeout the horse gets ``JobTimeoutException``, as with RQ's default. A handler
    that catches it, or that is inside a C call holding the GIL (the Python-level signal handler
    only runs between bytecodes), would run on; faulthandler's watchdog is a C thread that
    dumps the stacks (code locations only, no data) and ``_exit(1)``s the horse
    ``HANDLER_KILL_GRACE`` seconds later. Only job timeouts get the backstop, not the worker's
    own waits on its horse, which use the same class.
    """

    kill_grace = defaults.HANDLER_KILL_GRACE

    def setup_death_penalty(self) -> None:
        """Arm the timeout exception and, for a job, the hard kill behind it."""
        super().setup_death_penalty()
        if self._exception is JobTimeoutException and self._timeout > 0:
            faulthandler.dump_traceback_later(self._timeout + self.kill_grace, exit=True)

    def cancel_death_penalty(self) -> None:
        """Disarm both (the horse's job ended, by returning or by raising)."""
        if self._exception is JobTimeoutException:
            faulthandler.cancel_dump_traceback_later()
        super().cancel_death_penalty()


def forget_dead_tries(job: Job) -> None:
    """Drop from the job's list of tries (RQ's execution registry) those whose record has expired.

    A try whose worker died keeps its entry there 60 s longer than its record lives. RQ 3.0's
    ``job.delete()`` (every success: ``RESULT_TTL`` is 0) fetches each listed try and raises
    ``ValueError`` on the missing record, so a retry succeeding inside that minute would fail, and
    with its retries spent the same way a delivery whose handlers all ran would end failed.
    """
    executions = ExecutionRegistry(job.id, connection=job.connection)
    listed = executions.get_execution_ids()
    if not listed:
        return
    with job.connection.pipeline(transaction=False) as pipe:
        for execution_id in listed:
            pipe.exists(Execution(execution_id, job.id, connection=job.connection).key)
        alive = pipe.execute()
    dead = [execution_id for execution_id, kept in zip(listed, alive, strict=True) if not kept]
    if dead:
        job.connection.zrem(executions.key, *dead)


WRITE_REFUSED_EXIT = 75
"""The work horse's exit status when Redis refused its bookkeeping (EX_TEMPFAIL): not the handler's failure."""

REFUSED_WRITE_ERRORS = (
    redis.exceptions.OutOfMemoryError,
    redis.ConnectionError,
    redis.TimeoutError,
    FailureNotRecordedError,
)
"""What a refused or lost write raises in the horse's bookkeeping."""


RQ_EXCEPTION_LINE = "Worker %s: job %s: exception raised while executing"
"""The start of RQ's own line for a failed try (``BaseWorker.handle_exception``): a second, longer traceback."""


class _WithoutRQExceptionLine(logging.Filter):
    """Drops RQ's line for a failed try: the worker's own lines carry it (:meth:`CallbackWorker.handle_exception`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(RQ_EXCEPTION_LINE)


def _job_fields(job: Job) -> dict[str, Any]:
    """The delivery's fields for a log line about its job (only the job's id when its data cannot be read)."""
    try:
        delivery = job.args[0] if job.args else {}
    except Exception:  # RQ's DeserializationError, or a job that is not ours: the id is still known
        delivery = {}
    if not isinstance(delivery, dict):
        delivery = {}
    fields = {name: delivery.get(name) for name in ("task_id", "type", "event", "request_id")}
    return {**fields, "delivery_id": delivery.get("delivery_id") or job.id}


class CallbackWorker(Worker):
    """RQ's forking ``Worker`` with the hard-kill death penalty, a note of a requested stop, failures
    that are recorded or raise, tries that a refused write does not spend, and the orphan sweep."""

    death_penalty_class = HandlerDeathPenalty
    stop_requested = False
    horse_write_refused = False

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        """RQ's, once the tries of workers that died are forgotten (see :func:`forget_dead_tries`)."""
        forget_dead_tries(job)
        super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        """RQ's, except that a try whose horse met a refused write spends no retry, and an unrecorded failure raises.

        A full Redis is not the handler's fault: its try is retried with the retries it had. And
        when Redis refuses the failure's record, :class:`FailureNotRecordedError` keeps the job where
        it is (RQ would log it and let the caller drop the job from its list).
        """
        refused, self.horse_write_refused = self.horse_write_refused, False
        if refused and job.retry_intervals:  # RQ can retry only a job given intervals
            job.retries_left = (job.retries_left or 0) + 1
            exc_string = (
                "Redis refused a write while this try was being recorded (full, or unreachable); "
                f"tried again without spending a retry ({exc_string.strip()})"
            )
        before = self._failed_job_count()
        super().handle_job_failure(
            job, queue, started_job_registry=started_job_registry, exc_string=exc_string, execution=execution
        )
        if self._failed_job_count() == before:
            raise FailureNotRecordedError(f"job {job.id}: Redis refused the record of its failed try")

    def _failed_job_count(self) -> int:
        """This worker's count of failed tries, which RQ's failure transaction increments: it ran iff the count moved.

        Only this worker writes it, so unlike the job's whereabouts (other workers may already have
        taken a retried job) it says exactly whether the transaction was applied.
        """
        return int(self.connection.hget(self.key, "failed_job_count") or 0)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """RQ's (Sentry's hook and the exception handlers run), with one line per failure instead of two.

        A handler's failure was logged by dispatch, one line per handler with its traceback and
        the delivery's fields; RQ's line repeated it without them (up to 1.5 KB more). Any other
        failure of a try (a timeout, a job that cannot be read) gets one line of ours, with the
        delivery's fields, in place of RQ's.
        """
        exc_type = exc_info[0] if exc_info else None
        if not (isinstance(exc_type, type) and issubclass(exc_type, dispatch.HandlerFailedError)):
            outcome = "timeout" if isinstance(exc_type, type) and issubclass(exc_type, JobTimeoutException) else "error"
            log.error("delivery try failed", exc_info=exc_info, extra={**_job_fields(job), "outcome": outcome})
        quiet = _WithoutRQExceptionLine()
        self.log.addFilter(quiet)
        try:
            super().handle_exception(job, *exc_info)
        finally:
            self.log.removeFilter(quiet)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        """Note a horse that ended on a refused write (:data:`WRITE_REFUSED_EXIT`), then RQ's hook."""
        self.horse_write_refused = os.WIFEXITED(ret_val) and os.WEXITSTATUS(ret_val) == WRITE_REFUSED_EXIT
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """RQ's, in the horse; a refused write in its bookkeeping ends the horse with :data:`WRITE_REFUSED_EXIT`."""
        try:
            return bool(super().perform_job(job, queue, execution))
        except REFUSED_WRITE_ERRORS:
            log.warning(
                "Redis refused a write while a try was being recorded; the worker retries it without spending a retry",
                extra={"delivery_id": job.id, "outcome": "write_refused"},
            )
            logging.shutdown()
            os._exit(WRITE_REFUSED_EXIT)

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleanups, then (one worker at a time) the sweep for jobs in no list (:mod:`workers.rescue`)."""
        super().run_maintenance_tasks()
        for queue in self.queues:
            rescue.sweep_if_due(queue)

    def setup_work_horse_signals(self) -> None:
        """RQ's, but the horse ignores SIGTERM as well as SIGINT.

        Heroku sends SIGTERM to every process of a dyno at a restart, the horse included (it left
        the worker's process group). RQ's horse dies of it, cutting a handler off mid-effect and
        spending a retry. Ignoring it lets the running job finish while the worker waits (a warm
        shutdown); a job still running at Heroku's SIGKILL, 30 s later, is retried as abandoned.
        """
        super().setup_work_horse_signals()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def handle_warm_shutdown_request(self) -> None:
        """RQ's hook on SIGTERM/SIGINT: remember it, so the supervisor does not start the loop again."""
        self.stop_requested = True
        super().handle_warm_shutdown_request()


def _log_killed_horse(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """Say in our own log why a try failed without a traceback (RQ records the wait status)."""
    if os.WIFEXITED(ret_val) and os.WEXITSTATUS(ret_val) == WRITE_REFUSED_EXIT:
        return  # the horse said why itself; the try is retried without spending a retry
    log.error(
        "the handler process ended without finishing (killed past HANDLER_TIMEOUT, out of memory, or a crash); "
        "the try fails and the delivery is retried",
        extra={"delivery_id": job.id, "status": ret_val, "outcome": "horse_died"},
    )


def worker_connection(settings: Settings) -> redis.Redis:
    """The worker's Redis client: blocking reads, and commands retried for ~11 s across a dropped connection."""
    connection = connect(settings, blocking=True)
    connection.set_retry(Retry(ExponentialBackoff(cap=2.0, base=0.1), COMMAND_RETRIES))
    return connection


def build_worker(settings: Settings, connection: redis.Redis | None = None, name: str | None = None) -> CallbackWorker:
    """A worker on the callback queue, with handler modules imported and the crash-recovery intervals set.

    Talks to Redis (RQ names its client connection), so it raises a Redis error while Redis is away.
    """
    import_handler_modules(settings.callback_handlers)
    dispatch.dispatch_settings.set(dispatch.DispatchSettings(settings.effects_ttl, settings.ledger_ttl))
    connection = connection if connection is not None else worker_connection(settings)
    ledger.register_handlers(connection, registry.names())
    queue = Queue(settings.callback_queue, connection=connection, serializer=JSONSerializer)
    return CallbackWorker(
        [queue],
        name=name,
        connection=connection,
        serializer=JSONSerializer,
        job_monitoring_interval=settings.worker_heartbeat,
        maintenance_interval=settings.worker_maintenance_interval,
        worker_ttl=settings.worker_maintenance_interval + DEQUEUE_MARGIN,
        work_horse_killed_handler=_log_killed_horse,
    )


class _StopSignals:
    """SIGTERM/SIGINT while RQ's loop is not running (starting, backing off): stop instead of starting again."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def _run_name(name: str | None, run: int) -> str | None:
    """RQ refuses a second live worker of one name, and a failed run may leave its key behind."""
    if name is None or run == 0:
        return name
    return f"{name}.{run}"


def _wait_for_running_horse(worker: CallbackWorker) -> None:
    """A loop that quit mid-job left its horse running: let it end before a new loop starts.

    Its handler is bounded by HANDLER_TIMEOUT (and the hard kill); killing it instead would make
    the handler run again, and it may only be waiting for Redis to record its completion.
    """
    if worker.horse_pid:
        log.warning("waiting for the running job's process before starting again", extra={"outcome": "waiting"})
        worker.wait_for_horse()


def _stop_listener(worker: CallbackWorker) -> None:
    """RQ's teardown failed before it stopped the worker's pub/sub thread: stop it, or each restart leaks one."""
    try:
        worker.unsubscribe()
    except redis.RedisError as exc:
        log.warning("could not stop the command listener: redis %s", type(exc).__name__, extra={"outcome": "skipped"})


def run_supervised(
    settings: Settings, *, name: str | None = None, burst: bool = False, with_scheduler: bool = True
) -> None:
    """Run RQ's work loop until a stop is requested, starting it again with backoff when it ends on an error.

    RQ's loop quits on a Redis error it does not retry (``OutOfMemoryError`` when Redis is full,
    an outage that outlasts a command's retries); registration fails while Redis is away. Each
    is logged, then the loop starts again after 1, 2, 4 ... ``WORKER_RESTART_BACKOFF_CAP``
    seconds, so a full or unreachable Redis costs waiting, never the worker.
    """
    stop = _StopSignals()
    delay = 1.0
    run = 0
    while True:
        stop.install()
        if stop.event.is_set():
            return
        worker: CallbackWorker | None = None
        started = time.monotonic()
        try:
            worker = build_worker(settings, name=_run_name(name, run))
            run += 1
            worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="WARNING")
        except StopRequested:
            return
        except (redis.RedisError, FailureNotRecordedError) as exc:
            reason = f"redis {type(exc).__name__}: {exc}"
            if worker is not None:
                stop.install()
                _stop_listener(worker)
        else:
            if burst:
                return
            reason = "RQ's work loop ended on an error (logged above)"
        if worker is not None:
            stop.install()
            _wait_for_running_horse(worker)
            if worker.stop_requested:
                return
        if time.monotonic() - started > defaults.WORKER_RESTART_BACKOFF_CAP:
            delay = 1.0  # it ran for a while: this is a new outage, start the backoff over
        stop.install()
        log.error("worker stopped: %s; starting again in %.0f s", reason, delay, extra={"outcome": "restarting"})
        if stop.event.wait(delay):
            return
        delay = min(delay * 2, defaults.WORKER_RESTART_BACKOFF_CAP)


class CallbackWorkerPool(WorkerPool):
    """RQ's ``WorkerPool``, whose processes each run :func:`run_supervised` with our settings."""

    settings: Settings
    with_scheduler: bool = True

    def get_worker_process(self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO") -> BaseProcess:
        """A forked process running one supervised worker (RQ's pool would build a plain, unconfigured one)."""
        return get_context("fork").Process(
            target=run_supervised,
            args=(self.settings,),
            kwargs={"name": name, "burst": burst, "with_scheduler": self.with_scheduler},
            name=f"Worker {name} (WorkerPool {self.name})",
        )


@click.command(name="workers", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--burst", is_flag=True, help="exit when the queue is empty")
@click.option("--name", help="worker name (default: a random one)")
@click.option("--no-scheduler", is_flag=True, help="do not run RQ's scheduler for retries")
def work(burst: bool, name: str | None, no_scheduler: bool) -> None:
    """RQ worker(s) on the callback queue, with RQ's scheduler for delayed retries, until SIGTERM."""
    configure_logging()
    try:
        settings = Settings.from_env()
        import_handler_modules(settings.callback_handlers)  # a bad module stops the process here, not in a loop
    except CallbackServerError as exc:
        raise click.ClickException(exc.message) from None
    init_sentry(settings, "worker")  # SENTRY_DSN: RQ's integration reports failing jobs (forked horses inherit it)
    warn_if_evicting(worker_connection(settings))
    log.info("worker starting", extra={"count": settings.worker_processes})
    log_handlers(log, settings.callback_handlers)
    if settings.worker_processes == 1:
        run_supervised(settings, name=name, burst=burst, with_scheduler=not no_scheduler)
        return
    pool = CallbackWorkerPool(
        [settings.callback_queue],
        connection=worker_connection(settings),
        num_workers=settings.worker_processes,
        worker_class=CallbackWorker,
        serializer=JSONSerializer,
    )
    pool.settings = settings
    pool.with_scheduler = not no_scheduler
    pool.start(burst=burst, logging_level="INFO")


def main(argv: list[str] | None = None) -> None:
    """``python -m workers`` and the ``callback-worker`` script (click, as the ``callback_server`` commands).

    click exits the process with the command's status.
    """
    work.main(args=argv, prog_name="python -m workers")

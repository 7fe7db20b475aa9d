"""The simulator's state and background work: tasks complete by themselves and their callbacks go out.

One scheduler thread completes due tasks and hands due callback tries to a small pool of
sender threads; everything it acts on is read from SQLite, so after a restart it picks up
pending completions and deliveries where they stood. Nothing runs until :meth:`Simulator.start`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from scale_sim import defaults
from scale_sim.auth import Account
from scale_sim.config import SimSettings
from scale_sim.delivery import plan_deliveries, retry_delay, send_callback, wrong_key_for
from scale_sim.exceptions import InvalidRequestError
from scale_sim.faults import Faults, effective_faults
from scale_sim.pagination import ListQuery, page_body
from scale_sim.ratelimit import RateLimiter
from scale_sim.responses import error_response, fails_at_creation, generate_response, rng_for
from scale_sim.store import CallbackCopy, Store
from scale_sim.tasks import AUDIT_RESULTS, AUDIT_SOURCES, iso_ms, new_task_id, new_task_object, now_ms
from scale_sim.validation import TaskSpec

log = logging.getLogger(__name__)

MAX_PASSES = 1000
"""Bound on :meth:`Simulator.run_pending`'s passes, so a fault that re-queues work cannot spin forever."""

AUDITORS = {"customer": "customer@example.com", "scale": "reviewer@scale.example.com"}
"""Who an audit says audited the task when the request does not name anyone, by audit_source."""

_DEFAULT = object()


class Simulator:
    """The API's operations plus the background scheduler; lives in ``app.extensions["scale_sim"]``."""

    def __init__(
        self,
        settings: SimSettings,
        *,
        clock: Callable[[], int] = now_ms,
        new_id: Callable[[int], str] = new_task_id,
    ) -> None:
        """`clock` (epoch milliseconds) stamps tasks and events and `new_id` names tasks: tests that
        record fixtures pass fixed ones; scheduling always follows the wall clock."""
        self.settings = settings
        self.clock = clock
        self.new_id = new_id
        self.store = Store(settings.data_path)
        self.limiter = RateLimiter(settings.rate_limit)
        self._env_faults = settings.fault_values()
        self._wake = threading.Condition()
        self._dirty = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[int] = set()
        self._in_flight_lock = threading.Lock()

    # -- the API's operations ------------------------------------------------------------------------

    def create_task(self, account: Account, spec: TaskSpec) -> dict[str, Any]:
        """Store a checked task; it completes by itself after SCALE_SIM_COMPLETION_DELAY (test and live)."""
        created_ms = self.clock()
        task_id = self.new_id(created_ms)
        task = new_task_object(spec, task_id, created_ms, is_test=account.is_test)
        complete_at = time.time() + self.settings.completion_delay
        self.store.insert_task(task, account=account.id, complete_at=complete_at, faults=spec.faults)
        log.info("task created task_id=%s type=%s account=%s", task_id, spec.type, account.label)
        self._notify()
        return self.store.get_task(task_id)

    def get_task(self, account: Account, task_id: str) -> dict[str, Any]:
        """The task, if it is this account's (TaskNotFoundError otherwise)."""
        return self.store.get_task(task_id, account.id)

    def cancel_task(self, account: Account, task_id: str) -> dict[str, Any]:
        """Cancel a pending task (TaskStateError, a 500, when it is completed or canceled)."""
        task = self.store.cancel_task(task_id, account.id, now_ms=self.clock())
        log.info("task canceled task_id=%s type=%s", task_id, task["type"])
        return task

    def list_tasks(self, account: Account, query: ListQuery) -> dict[str, Any]:
        """One page of the account's tasks, shaped as `GET /v1/tasks` answers."""
        docs, total, offset = self.store.list_tasks(account.id, query)
        return page_body(docs, total=total, limit=query.limit, offset=offset)

    def complete_task(self, task_id: str, response: dict[str, Any], account: Account | None = None) -> dict[str, Any]:
        """Complete a pending (or recalled) task by hand with `response`; its callback goes out under its faults."""
        task = self.store.get_task(task_id, account.id if account else None)
        if task["status"] != "pending":
            raise InvalidRequestError(f"Task {task_id} is {task['status']}; only pending tasks can be completed")
        completed = self._finish(task, response, self.faults_for(task_id))
        if completed is None:
            raise InvalidRequestError(f"Task {task_id} is no longer pending")
        return completed

    def error_task(self, task_id: str, message: str | None = None, account: Account | None = None) -> dict[str, Any]:
        """Fail a pending, never completed task as an error at creation, and send the error callback."""
        task = self.store.get_task(task_id, account.id if account else None)
        if task["status"] != "pending" or "completed_at" in task:
            raise InvalidRequestError(
                f"Task {task_id} is {'recalled' if 'completed_at' in task else task['status']};"
                " only a pending task that never completed can fail at creation"
            )
        failed = self._fail(task, message, self.faults_for(task_id))
        if failed is None:
            raise InvalidRequestError(f"Task {task_id} is no longer pending")
        return failed

    def audit_task(
        self,
        task_id: str,
        result: str,
        *,
        account: Account | None = None,
        response: dict[str, Any] | None = None,
        source: str = "customer",
        audited_by: str | None = None,
        audit_time_secs: int | None = None,
    ) -> dict[str, Any]:
        """Audit a completed task (accepted, fixed, rejected, commented) and send its callback.

        Only `fixed` changes the response: to `response`, or to a new generated one of the type's shape.
        """
        if result not in AUDIT_RESULTS:
            raise InvalidRequestError(f"Invalid parameter 'result': must be one of {', '.join(AUDIT_RESULTS)}")
        if source not in AUDIT_SOURCES:
            raise InvalidRequestError(f"Invalid parameter 'source': must be one of {', '.join(AUDIT_SOURCES)}")
        if response is not None and result != "fixed":
            raise InvalidRequestError("Invalid parameter 'response': only a fixed audit changes the response")
        task = self.store.get_task(task_id, account.id if account else None)
        if task["status"] != "completed":
            raise InvalidRequestError(f"Task {task_id} is {task['status']}; only completed tasks can be audited")
        number = len(task["audits"]) + 1
        if result == "fixed" and response is None:
            # A fix that changes nothing would be a strange fix: try a few other answers of the same shape.
            for attempt in range(5):
                response = generate_response(task, self.settings.seed, salt=f"fix:{number}:{attempt}")
                if response != task["response"]:
                    break
        if audit_time_secs is None:
            audit_time_secs = rng_for(self.settings.seed, task_id, f"audit:{number}").randint(5, 600)
        audit = {
            "audited_by": audited_by or AUDITORS[source],
            "audited_at": None,  # set by the store to the event's time
            "audit_time_secs": audit_time_secs,
            "audit_result": result,
            "audit_source": source,
        }
        now = self.clock()
        plans = plan_deliveries(task["callback_url"], self.faults_for(task_id), now=time.time())
        audited = self.store.audit_task(task_id, audit, response=response, now_ms=now, plans=plans)
        log.info("task audited task_id=%s type=%s result=%s source=%s", task_id, task["type"], result, source)
        self._notify()
        return audited

    def recall_task(
        self, task_id: str, account: Account | None = None, *, complete_in: Any = _DEFAULT
    ) -> dict[str, Any]:
        """Send a completed task back to pending (response null) and send the recall callback.

        It completes again by itself `complete_in` seconds later (default SCALE_SIM_COMPLETION_DELAY;
        None: only by hand), with a new completed_at and response.
        """
        delay = self.settings.completion_delay if complete_in is _DEFAULT else complete_in
        task = self.store.get_task(task_id, account.id if account else None)
        if task["status"] != "completed":
            raise InvalidRequestError(f"Task {task_id} is {task['status']}; only completed tasks can be recalled")
        now = self.clock()
        plans = plan_deliveries(task["callback_url"], self.faults_for(task_id), now=time.time())
        complete_at = None if delay is None else time.time() + float(delay)
        recalled = self.store.recall_task(task_id, now_ms=now, complete_at=complete_at, plans=plans)
        log.info("task recalled task_id=%s type=%s", task_id, task["type"])
        self._notify()
        return recalled

    def backdate_task(self, account: Account, task_id: str, created_ms: int) -> dict[str, Any]:
        """Move a task's created_at back, as if it had been created then (time made to pass, no sleeping)."""
        return self.store.backdate_task(task_id, account.id, created_ms=created_ms)

    def delivery_log(self, account: Account, task_id: str) -> dict[str, Any]:
        """The task's callback copies and every try: attempt number, time, status code or error."""
        task = self.store.get_task(task_id, account.id)
        deliveries, attempts = self.store.delivery_log(task_id)
        return {
            "task_id": task_id,
            "status": task["status"],
            "callback_url": task["callback_url"],
            "callback_succeeded": task.get("callback_succeeded"),
            "faults": self.faults_for(task_id).describe(),
            "deliveries": deliveries,
            "attempts": attempts,
        }

    def callback_key(self, *, test: bool) -> str:
        """The callback auth key a task's callbacks carry: the test key for test tasks when one is set."""
        if test and self.settings.test_callback_auth_key.reveal():
            return self.settings.test_callback_auth_key.reveal()
        return self.settings.callback_auth_key.reveal()

    def faults_for(self, task_id: str) -> Faults:
        """SCALE_SIM_FAULTS merged with the task's own `metadata.sim_faults`."""
        return effective_faults(self._env_faults, self.store.task_faults(task_id))

    # -- background work -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the scheduler thread and the sender pool; pending work from a previous run resumes."""
        if self.running:
            return
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(defaults.DELIVERY_WORKERS, thread_name_prefix="scale-sim-callback")
        self._thread = threading.Thread(target=self._loop, name="scale-sim-scheduler", daemon=True)
        self._thread.start()
        log.info("scheduler started data=%s", self.settings.data_path)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the scheduler and wait for callback tries in flight; unsent ones stay queued in SQLite."""
        self._stopping.set()
        self._notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._in_flight_lock:
            self._in_flight.clear()

    def close(self) -> None:
        """Stop, then close the database."""
        self.stop()
        self.store.close()

    def run_pending(self) -> None:
        """Do everything due now in the calling thread (for tests that want no background thread)."""
        if self.running:
            raise RuntimeError("run_pending() is for a simulator whose scheduler is not started")
        self._stopping.clear()  # a stop() before must not make this pass return early
        for _ in range(MAX_PASSES):
            if not self._pass(self._attempt):
                return

    def _notify(self) -> None:
        with self._wake:
            self._dirty = True
            self._wake.notify_all()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._pass(self._submit)
                with self._in_flight_lock:
                    busy = set(self._in_flight)
                wake_at = self.store.next_wakeup(busy, defaults.REORDER_HOLD_LIMIT)
            except Exception:
                # Keep simulating after a bad pass (e.g. the disk filled up): log it with its
                # traceback and try again shortly rather than let the thread die unseen.
                log.exception("scheduler pass failed")
                wake_at = time.time() + defaults.MAX_IDLE_WAIT
            with self._wake:
                if self._dirty or self._stopping.is_set():
                    self._dirty = False
                    continue
                wait = defaults.MAX_IDLE_WAIT if wake_at is None else wake_at - time.time()
                if wait > 0:
                    self._wake.wait(min(wait, defaults.MAX_IDLE_WAIT))
                self._dirty = False

    def _pass(self, dispatch: Callable[[CallbackCopy], None]) -> bool:
        """Complete due tasks, release expired holds, dispatch due callback tries; True if it did anything."""
        did = False
        now = time.time()
        for due in self.store.due_completions(now):
            if self._stopping.is_set():
                return did
            faults = effective_faults(self._env_faults, due.faults)
            never_completed = "completed_at" not in due.task
            if never_completed and (faults.error or fails_at_creation(due.task)):
                did = self._fail(due.task, None, faults) is not None or did
                continue
            oversize = faults.oversize and due.task["type"] == "annotation"
            salt = "" if never_completed else f"redo:{due.task['updated_at']}"
            response = generate_response(due.task, self.settings.seed, oversize=oversize, salt=salt)
            did = self._finish(due.task, response, faults) is not None or did
        if self.store.release_held(now=now, held_before=now - defaults.REORDER_HOLD_LIMIT):
            did = True
        with self._in_flight_lock:
            busy = set(self._in_flight)
        for delivery in self.store.due_deliveries(time.time(), busy):
            if self._stopping.is_set():
                return did
            dispatch(delivery)
            did = True
        return did

    def _finish(self, task: dict[str, Any], response: dict[str, Any], faults: Faults) -> dict[str, Any] | None:
        now = self.clock()
        plans = plan_deliveries(task["callback_url"], faults, now=time.time())
        completed = self.store.complete_task(task["task_id"], response, now_ms=now, plans=plans)
        if completed is not None:
            log.info(
                "task completed task_id=%s type=%s faults=%s",
                task["task_id"],
                task["type"],
                ",".join(faults.describe()) or "-",
            )
            self._notify()
        return completed

    def _fail(self, task: dict[str, Any], message: str | None, faults: Faults) -> dict[str, Any] | None:
        now = self.clock()
        plans = plan_deliveries(task["callback_url"], faults, now=time.time())
        failed = self.store.error_task(task["task_id"], error_response(task, message), now_ms=now, plans=plans)
        if failed is not None:
            log.info("task failed at creation task_id=%s type=%s", task["task_id"], task["type"])
            self._notify()
        return failed

    def _submit(self, delivery: CallbackCopy) -> None:
        pool = self._pool
        if pool is None:
            return
        with self._in_flight_lock:
            self._in_flight.add(delivery.id)
        try:
            pool.submit(self._attempt_and_release, delivery)
        except RuntimeError:  # the pool is shutting down: the try stays queued in SQLite for next start
            with self._in_flight_lock:
                self._in_flight.discard(delivery.id)

    def _attempt_and_release(self, delivery: CallbackCopy) -> None:
        try:
            self._attempt(delivery)
        except Exception:
            log.exception("callback try failed to run task_id=%s copy=%s", delivery.task_id, delivery.copy)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(delivery.id)
            self._notify()

    def _attempt(self, delivery: CallbackCopy) -> None:
        """One POST of one copy of a task's callback, logged, with the next try scheduled if it failed."""
        key = self.callback_key(test=self.store.is_test(delivery.task_id))
        auth_value = wrong_key_for(key) if delivery.wrong_key else (key or None)
        result = send_callback(
            delivery.url, self.store.delivery_body(delivery), auth_value, timeout=self.settings.callback_timeout
        )
        attempt = delivery.attempts + 1
        finished = time.time()
        if result.delivered:
            state, next_at = "succeeded", None
        else:
            delay = retry_delay(attempt, self.settings.time_scale)
            state, next_at = ("failed", None) if delay is None else ("pending", finished + delay)
        outcome = self.store.record_attempt(
            delivery,
            at=iso_ms(int(finished * 1000)),
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            state=state,
            next_attempt_at=next_at,
        )
        log.info(
            "callback try task_id=%s copy=%d attempt=%d status=%s error=%s latency_ms=%d state=%s"
            " callback_succeeded=%s",
            delivery.task_id,
            delivery.copy,
            attempt,
            result.status_code,
            result.error,
            result.duration_ms,
            state,
            outcome,
        )
        if delivery.attempts == 0:
            # `reorder`: a held callback goes out right after the next task's first try.
            self.store.release_held(now=finished, except_task=delivery.task_id)

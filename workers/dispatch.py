"""What a worker runs for each delivery: build the typed task, run each handler once.

Handlers are isolated: each runs even if another raised, and each completion is recorded
on its own, so when one of three fails only that one runs again on the retry. At the end of
an attempt one pipeline writes what became of it: the ledger's outcome entry, the counters,
and (when every handler is done) a short life for the effects record, which is only
needed while the delivery can still run again.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from callback_server import defaults, ledger, sentry, stats
from callback_server.events import Event
from callback_server.probe import PROBE_TYPE, handle_probe
from callback_server.render import shorten
from workers.effects import Effects, effects_key
from workers.payloads import Task, build_task
from workers.registry import Registration, registry

log = logging.getLogger(__name__)


class HandlerFailedError(Exception):
    """One or more handlers raised; the job is retried (completed ones will be skipped)."""


@dataclass(frozen=True)
class DispatchSettings:
    """What a delivery's run needs from the worker's settings."""

    effects_ttl: int = defaults.EFFECTS_TTL
    ledger_ttl: int = defaults.LEDGER_TTL


DEFAULT_DISPATCH_SETTINGS = DispatchSettings()
"""The defaults, for a delivery run outside ``python -m workers`` (tests, a plain RQ worker)."""

dispatch_settings: ContextVar[DispatchSettings] = ContextVar("dispatch_settings", default=DEFAULT_DISPATCH_SETTINGS)
"""Set by the worker at start from EFFECTS_TTL and LEDGER_TTL (a work horse inherits it by fork)."""


def _job_connection() -> redis.Redis:
    job = get_current_job()
    if job is None:
        raise RuntimeError("process_delivery runs inside an RQ job")
    return job.connection


def process_delivery(delivery: dict[str, Any]) -> dict[str, list[str]]:
    """Run every handler of the delivery's task type and event that has not completed yet."""
    sentry.tag_delivery(delivery)
    connection = _job_connection()
    if delivery.get("type") == PROBE_TYPE:
        # doctor's end-to-end probe: never a handler's, and it leaves no record (callback_server/probe.py).
        return handle_probe(connection, delivery)
    job = get_current_job()
    attempt = _attempt_number(job)
    attempt_started = time.perf_counter()
    task = build_task(delivery)
    rerun = delivery.get("rerun") if isinstance(delivery.get("rerun"), dict) else None
    # A rerun keeps an effects record of its own (by its job id): the delivery's says its handlers
    # ran, which is exactly what a rerun ignores; its own retries still skip what it ran.
    done_id = job.id if rerun is not None and job is not None else task.delivery_id
    effects = Effects(connection, done_id, dispatch_settings.get().effects_ttl)
    done = effects.completed()
    ran: list[str] = []
    skipped: list[str] = []
    failed: dict[str, str] = {}
    summaries: dict[str, str] = {}
    counts: list[stats.Increments] = []
    fields = {
        "task_id": task.task_id,
        "type": task.type,
        "event": task.event,
        "delivery_id": task.delivery_id,
        "source": task.source,
        "attempt": attempt,
    }
    if delivery.get("request_id"):
        fields["request_id"] = delivery["request_id"]
    registrations = registry.handlers_for(task.type, Event(task.event, task.review_status))
    if rerun is not None:
        fields["run_id"] = rerun.get("run_id")
        registrations, missing = rerun_handlers(registrations, rerun)
        for name in missing:
            failed[name] = f"{name} is not registered in this worker (CALLBACK_HANDLERS)"
            summaries[name] = "not registered in this worker"
            log.error(
                "handler failed: not registered in this worker (CALLBACK_HANDLERS)",
                extra={**fields, "handler": name, "outcome": "failed"},
            )
    for registration in registrations:
        if registration.name in done:
            skipped.append(registration.name)
            continue
        started = time.perf_counter()
        try:
            registration.fn(task)
        except JobTimeoutException:
            # The timeout fires once: carrying on would leave the next handlers unbounded.
            failed[registration.name] = _storable(traceback.format_exc())
            _record_attempt(connection, task, attempt, attempt_started, ran, failed, counts, job, effects.key, rerun)
            raise
        except Exception as exc:
            failed[registration.name] = _storable(traceback.format_exc())
            summaries[registration.name] = one_line(f"{type(exc).__name__}: {exc}")
            counts.append(stats.handler_run(registration.name, task.type, "failed", time.perf_counter() - started))
            log.exception("handler failed", extra={**fields, "handler": registration.name, "outcome": "failed"})
            continue
        effects.record(registration.name)
        ran.append(registration.name)
        seconds = time.perf_counter() - started
        counts.append(stats.handler_run(registration.name, task.type, "done", seconds))
        log.info(
            "handler done",
            extra={**fields, "handler": registration.name, "outcome": "done", "latency_ms": round(seconds * 1000, 2)},
        )
    _record_attempt(connection, task, attempt, attempt_started, ran, failed, counts, job, effects.key, rerun)
    if skipped and not ran and not failed:
        # A re-run (a replay, a retry after a crash) with nothing left to do says so, not nothing.
        log.info("every handler was already done", extra={**fields, "outcome": "already_done", "count": len(skipped)})
    if failed:
        # Each handler's own traceback goes into the failed job, not just this summary.
        details = "\n".join(f"--- {name} ---\n{text}" for name, text in failed.items())
        # The first line is the failure's summary (jobs.failure_line): one line, whatever the errors say.
        summary = "; ".join(f"{name} ({summaries.get(name, 'timed out')})" for name in failed)
        raise HandlerFailedError(f"{len(failed)} handler(s) failed: {summary}\n{details}")
    return {"ran": ran, "skipped": skipped}


def rerun_handlers(registrations: list[Registration], rerun: dict[str, Any]) -> tuple[list[Registration], list[str]]:
    """A rerun job's handlers: only the named ones among those that ask for the delivery (never the
    fallback, unless named); and the named ones this worker does not have at all (they fail the try).
    """
    named = [name for name in rerun.get("handlers") or () if isinstance(name, str)]
    chosen = [r for r in registrations if r.name in named]
    known = set(registry.names())
    return chosen, [name for name in dict.fromkeys(named) if name not in known]


SUMMARY_CHARS = 200
"""Longest error text a failure's one-line summary keeps per handler."""


def one_line(text: str) -> str:
    """An error's text on one line, cut at :data:`SUMMARY_CHARS`: every control or invisible character
    (newlines, bidi overrides, lone surrogates) escaped by :func:`callback_server.render.printable`.

    A message, which a sender's body can fill, cannot then pose as another line.
    """
    return shorten(text, SUMMARY_CHARS)


def _storable(text: str) -> str:
    """A traceback as RQ can store it: a lone surrogate from the body, quoted by an error, escaped.

    RQ encodes a failure's text as strict UTF-8; one such character made the horse die while
    recording the failure, and the handler's real error was lost.
    """
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _attempt_number(job: Any) -> int:
    """Which try of the delivery this is: RQ's Retry counts down ``retries_left`` from one per interval."""
    if job is None:
        return 1
    if job.number_of_retries:
        return int(job.number_of_retries) + 1
    intervals = job.retry_intervals or []
    if job.retries_left is None or not intervals:
        return 1
    return max(len(intervals) - int(job.retries_left), 0) + 1


def _record_attempt(
    connection: redis.Redis,
    task: Task,
    attempt: int,
    started: float,
    ran: list[str],
    failed: dict[str, str],
    counts: list[stats.Increments],
    job: Any,
    done_key: str | None = None,
    rerun: dict[str, Any] | None = None,
) -> None:
    """What became of this attempt, in one round trip: the ledger, the counters, the completions' life.

    Best effort: the handlers' work is done and recorded, and a Redis error here must not make
    RQ retry the delivery; the ledger then lacks one entry, and the log line says so.
    """
    if not failed:
        kind, outcome = ledger.DONE, "done"
    elif job is not None and (job.retries_left or 0) > 0:
        kind, outcome = ledger.RETRYING, "retry"
    else:
        kind, outcome = ledger.FAILED, "failed"
    try:
        pipe = connection.pipeline(transaction=False)
        ledger.record_outcome(
            pipe,
            dispatch_settings.get().ledger_ttl,
            task.delivery_id,
            kind,
            attempt,
            (time.perf_counter() - started) * 1000,
            ran,
            failed,
        )
        outcomes = [stats.job_outcome(outcome)]
        if rerun is not None:
            outcomes.append(stats.rerun_job_outcome(outcome))
        stats.apply_now(pipe, stats.merge(*counts, *outcomes))
        if not failed:
            pipe.expire(done_key or effects_key(task.delivery_id), defaults.EFFECTS_TTL_DONE)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning(
            "could not record the attempt in the ledger: %s",
            type(exc).__name__,
            extra={"delivery_id": task.delivery_id, "outcome": "unrecorded"},
        )

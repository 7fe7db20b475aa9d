"""What a worker runs for each delivery: build the typed task, run each handler once.

Handlers are isolated: each runs even if another raised, and each completion is recorded
on its own, so when one of three fails only that one runs again on the retry.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import redis
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from callback_server import defaults
from callback_server.events import Event
from workers.effects import Effects
from workers.payloads import Task, build_task
from workers.registry import HandlerRegistry

log = logging.getLogger(__name__)


class HandlerFailedError(Exception):
    """One or more handlers raised; the job is retried (completed ones will be skipped)."""


registry = HandlerRegistry()
"""The registry ``@handles`` adds to; the worker reads it."""

effects_ttl: int = defaults.EFFECTS_TTL
"""Set by the worker from EFFECTS_TTL at start."""

def _job_connection() -> redis.Redis:
    job = get_current_job()
    if job is None:
        raise RuntimeError("process_delivery runs inside an RQ job")
    return job.connection


def record_unhandled(task: Task) -> None:
    """The fallback: keep a note of a delivery no handler serves, so it is never silently dropped."""
    connection = _job_connection()
    note = {
        "delivery_id": task.delivery_id,
        "task_id": task.task_id,
        "type": task.type,
        "event": task.event,
        "review_status": task.review_status,
        "recorded_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    connection.lpush(defaults.UNHANDLED_KEY, json.dumps(note))
    log.warning(
        "no handler for this type and event; recorded in %s",
        defaults.UNHANDLED_KEY,
        extra={
            "task_id": task.task_id,
            "type": task.type,
            "event": task.event,
            "delivery_id": task.delivery_id,
            "outcome": "unhandled",
        },
    )


registry.fallback = record_unhandled


def process_delivery(delivery: dict[str, Any]) -> dict[str, list[str]]:
    """Run every handler of the delivery's task type that has not completed yet."""
    connection = _job_connection()
    job = get_current_job()
    attempt = (job.number_of_retries or 0) + 1 if job is not None else 1
    task = build_task(delivery)
    effects = Effects(connection, task.delivery_id, effects_ttl)
    done = effects.completed()
    ran: list[str] = []
    skipped: list[str] = []
    failed: dict[str, str] = {}
    fields = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id, "attempt": attempt}
    for registration in registry.handlers_for(task.type, Event(task.event, task.review_status)):
        if registration.name in done:
            skipped.append(registration.name)
            continue
        started = time.perf_counter()
        try:
            registration.fn(task)
        except JobTimeoutException:
            # The timeout fires once: carrying on would leave the next handlers unbounded.
            raise
        except Exception:
            failed[registration.name] = traceback.format_exc()
            log.exception("handler failed", extra={**fields, "handler": registration.name, "outcome": "failed"})
            continue
        effects.record(registration.name)
        ran.append(registration.name)
        log.info(
            "handler done",
            extra={
                **fields,
                "handler": registration.name,
                "outcome": "done",
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
    if failed:
        # Each handler's own traceback goes into the failed job, not just this summary.
        details = "\n".join(f"--- {name} ---\n{text}" for name, text in failed.items())
        raise HandlerFailedError(f"{len(failed)} handler(s) failed: {', '.join(failed)}\n{details}")
    return {"ran": ran, "skipped": skipped}

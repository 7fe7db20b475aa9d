"""The registry's fallback: a delivery that none of its type's handlers asked for is recorded, never dropped."""

from __future__ import annotations

import json
import logging

from rq import get_current_job

from callback_server import defaults, stats
from callback_server.times import stamp
from workers.payloads import Task

log = logging.getLogger(__name__)


def record_unhandled(task: Task) -> None:
    """The fallback: keep a note of a delivery no handler serves, so it is never silently dropped."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("record_unhandled runs inside an RQ job")
    connection = job.connection
    note = {
        "delivery_id": task.delivery_id,
        "task_id": task.task_id,
        "type": task.type,
        "event": task.event,
        "review_status": task.review_status,
        "recorded_at": stamp(),
    }
    pipe = connection.pipeline(transaction=False)
    pipe.lpush(defaults.UNHANDLED_KEY, json.dumps(note))
    stats.apply_now(pipe, stats.unhandled(task.type, task.event))
    pipe.execute()
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

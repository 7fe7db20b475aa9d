"""Three handlers for the rerun tests: each notes what it saw in Redis (``test:rerun``).

Imported by the rerun command (it checks names against CALLBACK_HANDLERS) and by the worker
that runs the jobs, so they talk to Redis only through the job's own connection.
"""

from __future__ import annotations

from rq import get_current_job

from workers import handles
from workers.payloads import Task

RUNS = "test:rerun"
"""List of "handler|task_id|delivery_id|source|event" for every run."""


def _note(handler: str, task: Task) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.rpush(RUNS, f"{handler}|{task.task_id}|{task.delivery_id}|{task.source}|{task.event}")
    if job.connection.decr(f"test:fail:{handler}") >= 0:
        raise RuntimeError(f"{handler} told to fail")


@handles("categorization")
def store_boxes(task: Task) -> None:
    """The handler that had a bug: categorization results."""
    _note("store_boxes", task)


@handles("categorization")
def label_items(task: Task) -> None:
    """A second handler of the same type, which must not run again when only store_boxes is named."""
    _note("label_items", task)


@handles("categorization", events={"error"})
def report_errors(task: Task) -> None:
    """Errors only: a rerun that names it skips completed tasks."""
    _note("report_errors", task)

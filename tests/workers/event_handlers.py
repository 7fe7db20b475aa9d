"""Handlers that choose events, for the end-to-end event tests: each notes what it saw in Redis."""

from __future__ import annotations

from rq import get_current_job

from workers import handles
from workers.payloads import Task

SEEN = "test:events"
"""List of "handler:event:review_status:delivery_id" for every run."""


def _note(handler: str, task: Task) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.rpush(SEEN, f"{handler}:{task.event}:{task.review_status or '-'}:{task.delivery_id}")


@handles("categorization")
def results(task: Task) -> None:
    """The default: completions and fixed audits."""
    _note("results", task)


@handles("categorization", events="*")
def everything(task: Task) -> None:
    """Every event of the type."""
    _note("everything", task)


@handles("categorization", events={"audit", "recalled"})
def reviews(task: Task) -> None:
    """Audits and recalls only."""
    _note("reviews", task)

"""Handlers for tests: each records its run in Redis, and can be told to fail or hang.

Imported by real worker processes through CALLBACK_HANDLERS, so they talk to Redis only
through the job's own connection, and take their instructions from Redis keys.
"""

from __future__ import annotations

import os
import signal
import time

from rq import get_current_job

from workers import handles
from workers.lease import lease_key
from workers.payloads import Task

EFFECTS = "test:effects"
"""List of "handler:delivery_id" for every completed run."""

STARTED = "test:started"
"""List of "handler:delivery_id" for every started run."""


def _conn():  # noqa: ANN202 - a redis client
    job = get_current_job()
    assert job is not None
    return job.connection


def _note(task: Task, handler: str, key: str) -> None:
    _conn().rpush(key, f"{handler}:{task.delivery_id}")


@handles("*")
def record(task: Task) -> None:
    """Always succeeds; fails while test:fail:record counts down, hangs while test:hang:record does."""
    conn = _conn()
    _note(task, "record", STARTED)
    if conn.decr("test:fail:record") >= 0:
        raise RuntimeError("record told to fail")
    if conn.decr("test:hang:record") >= 0:
        time.sleep(3600)
    if conn.decr("test:kill:record") >= 0:
        os.kill(os.getpid(), signal.SIGKILL)  # a handler that takes its worker down (OOM, a segfault)
    if conn.decr("test:lose_lease:record") >= 0:
        job = get_current_job()
        assert job is not None
        conn.delete(lease_key(job.id))  # as if this worker stalled past its lease
    _note(task, "record", EFFECTS)


@handles("*")
def second(task: Task) -> None:
    """A second handler of every type, to show isolation."""
    conn = _conn()
    _note(task, "second", STARTED)
    if conn.decr("test:fail:second") >= 0:
        raise RuntimeError("second told to fail")
    _note(task, "second", EFFECTS)

"""The worker's lines about a delivery: one line per failure, with its traceback and the delivery's
fields (RQ's own, second traceback silenced), and one line for a re-run with nothing left to do."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from typing import Any

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from callback_server.config import Settings
from callback_server.deliveries import DISPATCH_FUNCTION
from tests.support.jobs import enqueue
from tests.support.logfmt import parse
from tests.support.processes import stack_env, worker_args

pytestmark = pytest.mark.slow

RECORD = "tests.workers.recording_handlers.record"


def run_worker(settings: Settings, **env: str) -> tuple[str, list[dict[str, Any]]]:
    """A real `python -m workers --burst` over what is queued: its whole output, and its lines as fields."""
    done = subprocess.run(
        worker_args("--burst", "--no-scheduler"),
        env=stack_env(settings.redis_url, HANDLER_RETRY_INTERVALS="30", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr, [parse(line) for line in done.stderr.splitlines() if line]


def test_a_failing_handler_is_one_line_with_its_traceback_and_the_deliverys_fields(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    redis_conn.set("test:fail:record", 1)
    delivery = enqueue(settings, redis_conn, "categorization")
    text, lines = run_worker(settings)
    (failure,) = [line for line in lines if line.get("outcome") == "failed" or line["level"] == "error"]
    assert failure["msg"] == "handler failed" and failure["handler"] == RECORD
    assert (failure["task_id"], failure["type"], failure["event"], failure["delivery_id"]) == (
        delivery.task_id,
        "categorization",
        "completed",
        delivery.delivery_id,
    )
    assert failure["exc"].startswith("Traceback (most recent call last):")
    assert failure["exc"].rstrip().endswith("RuntimeError: record told to fail")
    # RQ's own line, a second traceback without the delivery's fields, is gone.
    assert "exception raised while executing" not in text
    assert text.count("Traceback (most recent call last)") == 1


def test_a_try_that_times_out_is_one_line_of_ours(settings: Settings, redis_conn: redis.Redis) -> None:
    redis_conn.set("test:hang:record", 1)
    # The timeout is the job's, written when it was queued.
    delivery = enqueue(replace(settings, handler_timeout=1), redis_conn, "transcription")
    text, lines = run_worker(settings)
    (failure,) = [line for line in lines if line["level"] == "error"]
    assert failure["msg"] == "delivery try failed" and failure["outcome"] == "timeout"
    assert (failure["task_id"], failure["delivery_id"]) == (delivery.task_id, delivery.delivery_id)
    assert "JobTimeoutException" in failure["exc"]
    assert "exception raised while executing" not in text


def test_a_rerun_whose_handlers_were_all_done_says_so_in_one_line(settings: Settings, redis_conn: redis.Redis) -> None:
    delivery = enqueue(settings, redis_conn, "categorization")
    _, first = run_worker(settings)
    assert len([line for line in first if line["msg"] == "handler done"]) == 3  # the example, record, second
    # The same delivery queued again (as a replay of a job whose horse died after its last handler would be).
    queue = Queue(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    queue.enqueue(DISPATCH_FUNCTION, delivery.as_job_arg())
    _, again = run_worker(settings)
    assert not [line for line in again if line["msg"] == "handler done"]
    (line,) = [line for line in again if line.get("delivery_id") == delivery.delivery_id]
    assert line["msg"] == "every handler was already done" and line["outcome"] == "already_done"
    assert line["count"] == "3" and line["task_id"] == delivery.task_id

"""Benchmark handler: a no-op for the categorization callbacks the benchmarks send, recording latency."""

from __future__ import annotations

import time

from rq import get_current_job

from workers import handles
from workers.payloads import Task

LATENCY_KEY = "bench:latency"
"""Redis list of POST-to-handler-start latencies, in milliseconds."""


@handles("categorization")
def noop(task: Task) -> None:
    """Does nothing: the benchmark measures the worker, not the handler."""
    sent_at = task.metadata.get("sent_at")
    if sent_at is not None:
        job = get_current_job()
        assert job is not None
        job.connection.rpush(LATENCY_KEY, (time.time() - float(sent_at)) * 1000)

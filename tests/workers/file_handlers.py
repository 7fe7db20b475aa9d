"""A catch-all handler for tests that notes each delivery it ran in a file, not in Redis.

The proof that a handler ran must not depend on the store under test: with Redis full, a handler
that recorded its run in Redis would fail for that reason alone. The file is ``TEST_RUNS_FILE``.
"""

from __future__ import annotations

import os
import time

from workers import handles
from workers.payloads import Task


@handles("*")
def note_run(task: Task) -> None:
    """Append the delivery id to TEST_RUNS_FILE (one short write: whole lines even with several workers).

    TEST_HANDLER_SECONDS (default 0) makes each run take that long, so a fault lands mid-job.
    """
    time.sleep(float(os.environ.get("TEST_HANDLER_SECONDS", "0")))
    with open(os.environ["TEST_RUNS_FILE"], "a", encoding="utf-8") as runs:
        runs.write(f"{task.delivery_id}\n")

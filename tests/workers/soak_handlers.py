"""A handler of every event of every type, for the soak: notes each completed run where the recording handlers do.

The recording handlers (``record``, ``second``) take the default events only (completions and
fixed audits); this one also sees errors, other audits and recalls, so every delivery the soak
expects leaves at least one note in ``test:effects``.
"""

from __future__ import annotations

from rq import get_current_job

from workers import handles
from workers.payloads import Task

EFFECTS = "test:effects"
"""The recording handlers' list of completed runs (named, not imported: see tests/test_soak.py)."""


@handles("*", events="*")
def every_event(task: Task) -> None:
    """Note "every_event:<delivery_id>" once the run is done (the job's own connection, as a worker has)."""
    job = get_current_job()
    assert job is not None
    job.connection.rpush(EFFECTS, f"every_event:{task.delivery_id}")

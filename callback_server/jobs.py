"""RQ jobs for operators: the failure of a job, in one line or in full; a replay's fresh retries."""

from __future__ import annotations

from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.registry import FailedJobRegistry

NOT_FAILED = "not in the failed registry"
"""What a replay of a job that is not (or no longer) in the failed registry says."""


def failure_text(job: Job) -> str:
    """The traceback of the job's latest failed run ('' if it has none)."""
    result = job.latest_result()
    return (result.exc_string or "") if result is not None else ""


HANDLERS_FAILED = "workers.dispatch.HandlerFailedError: "
"""How the failure of a delivery's handlers starts its one-line summary in a traceback."""


def failure_line(job: Job, width: int = 200) -> str:
    """One line that says why the job's latest try failed.

    For failing handlers it is the dispatch's own summary line (each handler and its error, with
    newlines escaped), found by its first occurrence: a handler's message, which a sender's body
    can fill, comes later in the text and cannot pose as it. Otherwise the traceback's last line.
    """
    return summary_line(failure_text(job), width)


def summary_line(text: str, width: int = 200) -> str:
    """:func:`failure_line` of a traceback's text."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    summary = next((line for line in lines if line.startswith(HANDLERS_FAILED)), None)
    if summary is not None:
        return summary[len(HANDLERS_FAILED) :][:width]
    return lines[-1][:width] if lines else ""


def reset_retries(job: Job) -> int:
    """Give a job about to be replayed every retry again; returns its tries.

    RQ's requeue keeps ``retries_left``, which a job that ran out (or whose workers died,
    each death spending one) has at 0: replayed, it would get a single try. The count of
    retries taken goes too, so the attempt numbers in the logs start over.
    """
    retries = len(job.retry_intervals or ())
    job.retries_left = retries or None
    job.number_of_retries = None
    job.connection.hdel(job.key, "number_of_retries")
    return retries + 1


def replay_failed(registry: FailedJobRegistry, job_id: str) -> int | None:
    """A failed job back on its queue with all its retries: the console's and the CLI's one replay.

    Returns its tries, or None when the job is not in the failed registry (never was, was
    deleted, or another replay took it first: RQ's requeue then raises, which means the same).
    Handlers that had completed are skipped when it runs.
    """
    job = Job.fetch_many([job_id], connection=registry.connection, serializer=registry.serializer)[0]
    if job is None or job_id not in registry:
        return None
    tries = reset_retries(job)
    try:
        registry.requeue(job)
    except InvalidJobOperation:
        return None
    return tries

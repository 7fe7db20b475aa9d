"""Reading RQ jobs back for operators: the failure of a job, in one line or in full."""

from __future__ import annotations

from rq.job import Job


def failure_text(job: Job) -> str:
    """The traceback of the job's latest failed run ('' if it has none)."""
    result = job.latest_result()
    return (result.exc_string or "") if result is not None else ""


def failure_line(job: Job, width: int = 200) -> str:
    """The last line of the job's latest traceback: usually the exception and its message."""
    lines = [line for line in failure_text(job).strip().splitlines() if line.strip()]
    return lines[-1][:width] if lines else ""

"""RQ jobs for operators: the failure of a job, in one line or in full; a replay's fresh retries; jobs
waiting on their retry schedule, and putting one on the queue now."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from callback_server.render import printable

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
    return exception_text(lines)[:width]


def exception_text(lines: list[str]) -> str:
    """The last exception of a traceback, its type and its whole message on one line.

    The message starts after the last frame (a ``  File "..."`` line and its indented code and
    caret lines) and may run over several lines, which are joined with `` / ``: the last line
    alone would show a message's second line as the error.
    """
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not frames:
        return lines[-1] if lines else ""
    message = [line for line in lines[frames[-1] + 1 :] if not line.startswith("    ")]
    return " / ".join(message) if message else lines[-1]


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


def scheduled_registry(connection: Any, queue_name: str) -> ScheduledJobRegistry:
    """RQ's registry of jobs waiting for their next try (retry intervals), on the callback queue."""
    return ScheduledJobRegistry(queue=Queue(queue_name, connection=connection, serializer=JSONSerializer))


def waiting(connection: Any, queue_name: str, limit: int = 50) -> list[tuple[Job, datetime]]:
    """Jobs waiting on their retry schedule, soonest first, each with when it runs next (read only)."""
    registry = scheduled_registry(connection, queue_name)
    pairs = connection.zrange(registry.key, 0, limit - 1, withscores=True)
    ids = [raw.decode() if isinstance(raw, bytes) else raw for raw, _ in pairs]
    jobs = Job.fetch_many(ids, connection=connection, serializer=JSONSerializer)
    return [
        (job, datetime.fromtimestamp(score, UTC))
        for job, (_, score) in zip(jobs, pairs, strict=True)
        if job is not None
    ]


def retry_now(connection: Any, queue_name: str, job_id: str) -> bool:
    """A job waiting for its next try put on the queue now (it keeps its remaining retries); False if
    it is not waiting. The console's "Retry now" and ``waiting retry-now`` both come here."""
    registry = scheduled_registry(connection, queue_name)
    try:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return False
    try:
        registry.requeue(job)
    except InvalidJobOperation:
        return False
    return True


DELIVERY_JOB_ID = re.compile(r"^(?:rerun-[0-9a-f]{12}-)?([0-9a-f]{32})$")
"""A delivery's job id (its delivery id) or a rerun job's (``rerun-<run>-<delivery id>``)."""


def last_error(job: Job, ledger_ttl: int) -> str:
    """Why a job's latest try failed, in one line naming each failing handler and its error.

    RQ keeps a failure's traceback only once a job is out of retries: a job waiting for its next
    try has only a "retried" result, so its error is read from the ledger (:func:`ledger_error`).
    """
    return failure_line(job) or ledger_error(job.connection, ledger_ttl, job.id)


def ledger_error(connection: Any, ledger_ttl: int, job_id: str) -> str:
    """The failing handlers of a delivery job's latest attempt, from the ledger ('' when it has none).

    The delivery is known from the job's id alone, so a list page reads no job body.
    """
    from callback_server.ledger import Ledger  # the ledger imports the schemas: only when needed

    match = DELIVERY_JOB_ID.match(job_id)
    entry = Ledger(connection, ledger_ttl).delivery(match[1], handler_names=False) if match else None
    if entry is None or not entry.attempts or not entry.attempts[-1].failures:
        return ""
    failures = entry.attempts[-1].failures
    parts = [f"{name} ({summary_line(text, 200) or 'failed'})" for name, text in failures.items()]
    return printable(f"{len(failures)} handler(s) failed: " + "; ".join(parts))[:400]

"""What the console's pages show, read from Redis, the ledger and RQ without changing anything.

Every RQ registry is read with ``cleanup=False`` or by its key directly: RQ's cleanup retries or
fails abandoned jobs, and a page view must never do that. Workers are read from their hashes,
not with ``Worker.all()``, which deletes the names of workers whose key has lapsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from callback_server import defaults, stats
from callback_server.jobs import DELIVERY_JOB_ID, failure_text, ledger_error, summary_line
from callback_server.ledger import Arrival, Attempt, Entry, Ledger
from callback_server.reconcile import RunLog
from callback_server.reconcile_request import RunRequests
from callback_server.rerun import Run, RunStore, rerun_job_id
from callback_server.status import Status, worker_is_live
from callback_server.times import parse_instant

STATES = ("queued", "running", "waiting to retry", "retrying", "failed", "done")
"""The states a delivery can be shown in (the ledger's, refined by what RQ knows now)."""

SOURCES = ("callback", "reconcile", "replay", "fetch", "rerun")


LARGE_BODY = 4096
"""Characters of pretty-printed body above which the body is shown folded."""


def now() -> datetime:
    """The current time, UTC (one place, so pages agree)."""
    return datetime.now(UTC)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _when(value: bytes | str | None) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    return parse_instant(text)


@dataclass
class Registries:
    """RQ's view of the queue right now: which job ids run, wait to retry (and until when), failed."""

    queue: Queue
    running: set[str]
    scheduled: dict[str, datetime]
    failed: set[str]

    @classmethod
    def read(cls, connection: redis.Redis, queue_name: str) -> Registries:
        """The three registries, each read once."""
        queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        started = StartedJobRegistry(queue=queue)
        scheduled = ScheduledJobRegistry(queue=queue)
        failed = FailedJobRegistry(queue=queue)
        waiting = {
            _text(job_id): datetime.fromtimestamp(score, UTC)
            for job_id, score in connection.zrange(scheduled.key, 0, -1, withscores=True)
        }
        # A rerun job (rerun-<run>-<delivery>) stands for its delivery too, so a delivery being rerun shows so.
        return cls(
            queue=queue,
            running=_with_deliveries(started.get_job_ids(cleanup=False)),
            scheduled={**{_delivery_of(job_id): at for job_id, at in waiting.items()}, **waiting},
            failed=_with_deliveries(failed.get_job_ids(cleanup=False)),
        )

    def state(self, entry: Entry) -> str:
        """The delivery's state: the ledger's, refined by RQ (running, waiting to retry)."""
        if entry.delivery_id in self.running:
            return "running"
        if entry.delivery_id in self.scheduled:
            return "waiting to retry"
        if entry.delivery_id in self.failed:
            return "failed"
        return entry.state


def _delivery_of(job_id: str) -> str:
    match = DELIVERY_JOB_ID.match(job_id)
    return match[1] if match else job_id


def _with_deliveries(job_ids: list[str]) -> set[str]:
    return set(job_ids) | {_delivery_of(job_id) for job_id in job_ids}


def counts(status: Status) -> dict[str, int]:
    """The overview's counts, from the deployment's status snapshot (the same numbers as /metrics)."""
    return {
        "queued": status.depth,
        "running": status.running,
        "waiting to retry": status.scheduled,
        "failed": status.failed,
        "quarantined": status.quarantined,
        "unhandled": status.unhandled_kept,
    }


@dataclass
class WorkerView:
    """One RQ worker as the page shows it."""

    name: str
    host: str = ""
    pid: str = ""
    state: str = "dead"
    current_job: str = ""
    job_since: datetime | None = None
    last_heartbeat: datetime | None = None
    done: int = 0
    failed: int = 0
    lapsed: bool = True


def workers(connection: redis.Redis) -> list[WorkerView]:
    """Every worker RQ has registered; ``lapsed`` marks dead ones (:func:`callback_server.status.worker_is_live`)."""
    from rq.worker import Worker

    names = sorted(_text(key) for key in connection.smembers(Worker.redis_workers_keys))
    pipe = connection.pipeline(transaction=False)
    for key in names:
        pipe.hgetall(key)
    rows = pipe.execute() if names else []
    found: list[WorkerView] = []
    prefix = Worker.redis_worker_namespace_prefix
    for key, row in zip(names, rows, strict=True):
        view = WorkerView(name=key[len(prefix) :] if key.startswith(prefix) else key, lapsed=not worker_is_live(row))
        if row:
            data = {_text(k): _text(v) for k, v in row.items()}
            view.host = data.get("hostname", "")
            view.pid = data.get("pid", "")
            view.state = data.get("state", "?")
            view.current_job = data.get("current_job", "")
            view.last_heartbeat = _when(data.get("last_heartbeat"))
            view.done = int(data.get("successful_job_count") or 0)
            view.failed = int(data.get("failed_job_count") or 0)
            if view.current_job:
                view.job_since = _when(connection.hget(Job.key_for(view.current_job), "started_at"))
        found.append(view)
    return found


@dataclass
class Charts:
    """The chart bars of the last hour (per minute) and the last day (per 15 minutes)."""

    hour: list[Any] = field(default_factory=list)
    day: list[Any] = field(default_factory=list)


def chart_data(connection: redis.Redis) -> Charts:
    """Per-minute counters of the last day, one pipeline."""
    from callback_server.web.dashboard.charts import bars

    minutes = stats.minutes(connection, 24 * 60)
    return Charts(hour=bars(minutes[-60:], 1), day=bars(minutes, 15))


@dataclass
class FailedJob:
    """A job in the failed or scheduled registry."""

    id: str
    description: str
    error: str
    ended_at: datetime | None
    retry_at: datetime | None = None

    @property
    def delivery_id(self) -> str:
        """The delivery the job runs (a rerun job's id holds it after its run's)."""
        return _delivery_of(self.id)


def _job_rows(connection: redis.Redis, ids: list[str], scheduled: dict[str, datetime] | None = None) -> list[FailedJob]:
    """Rows for a list page: each job's description, end and latest error, never its body (one pipeline)."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(Job.key_for(job_id), "description", "ended_at")
            pipe.xrevrange(Result.get_key(job_id), "+", "-", count=1)
        replies = pipe.execute()
    rows = []
    for job_id, (description, ended_at), latest in zip(ids, replies[::2], replies[1::2], strict=True):
        if description is None and ended_at is None:
            continue  # the job is gone
        error = ""
        if latest:
            result_id, payload = latest[0]
            result = Result.restore(job_id, _text(result_id), payload, connection=connection, serializer=JSONSerializer)
            error = summary_line(result.exc_string or "")
        rows.append(FailedJob(job_id, _text(description or b""), error, _when(ended_at), (scheduled or {}).get(job_id)))
    return rows


def _matching(rows: list[FailedJob], text: str) -> list[FailedJob]:
    return [row for row in rows if text.lower() in row.description.lower()] if text else rows


def failed_jobs(connection: redis.Redis, queue_name: str, text: str = "", limit: int = 200) -> list[FailedJob]:
    """Failed jobs, newest first, whose description holds ``text`` (task id, type, event)."""
    registry = FailedJobRegistry(queue=Queue(queue_name, connection=connection, serializer=JSONSerializer))
    ids = registry.get_job_ids(0, 5000, desc=True, cleanup=False)
    return _matching(_job_rows(connection, ids), text)[:limit]


def scheduled_jobs(
    connection: redis.Redis, queue_name: str, text: str = "", limit: int = 200, ledger_ttl: int | None = None
) -> list[FailedJob]:
    """Jobs waiting to retry, soonest first, whose description holds ``text``; with ``ledger_ttl``, each
    with its failing handlers and their errors, read from the ledger."""
    registry = ScheduledJobRegistry(queue=Queue(queue_name, connection=connection, serializer=JSONSerializer))
    pairs = connection.zrange(registry.key, 0, 5000, withscores=True)
    when = {_text(job_id): datetime.fromtimestamp(score, UTC) for job_id, score in pairs}
    rows = _matching(_job_rows(connection, list(when), when), text)[:limit]
    for row in rows:
        # RQ keeps no traceback for a job waiting to retry: the ledger has it.
        if not row.error and ledger_ttl is not None:
            row.error = ledger_error(connection, ledger_ttl, row.id)
    return rows


@dataclass
class Body:
    """A delivery's body while its job exists, pretty-printed; ``kept`` False once the job is gone."""

    kept: bool
    text: str = ""
    large: bool = False
    truncated: bool = False
    """The pretty text was cut at :func:`render_limit`; the page links to the raw body."""
    size: int = 0
    """Bytes of the job's stored JSON, the body included."""
    envelope: dict[str, Any] = field(default_factory=dict)
    traceback: str = ""
    request_id: str = ""


def job_body(connection: redis.Redis, job_id: str) -> Body:
    """The body from the job hash (queued, scheduled, failed jobs); finished jobs are deleted (RESULT_TTL 0)."""
    try:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        args = job.args
    except (NoSuchJobError, ValueError, TypeError):
        return Body(kept=False)
    if not args or not isinstance(args[0], dict):
        return Body(kept=False)
    argument = dict(args[0])
    body = argument.pop("body", None)
    size = len(job.data)  # the job's stored JSON, body included: what the raw link serves
    try:
        text, truncated = pretty(body, render_limit(size))
    except RecursionError:
        text, truncated = "(nested too deeply to indent: see the raw body)", True
    return Body(
        kept=True,
        text=text,
        large=len(text) > LARGE_BODY,
        truncated=truncated,
        size=size,
        envelope=argument,
        traceback=failure_text(job),
        request_id=str(argument.get("request_id") or ""),
    )


RENDER_FACTOR = 4
"""A page renders at most this many times the compact body's characters (plus :data:`RENDER_SLACK`)."""

RENDER_SLACK = 16 * 1024
RENDER_MAX = 2 * 1024 * 1024
"""Characters of pretty text a page renders at the most, whatever the body's size."""


def render_limit(compact_size: int) -> int:
    """How much pretty text a body of ``compact_size`` characters may become on a page.

    Indentation of deeply nested arrays multiplies a body about 900 times (108 KB into 98 MB):
    a page renders a small multiple of the body, and links to the raw body for the rest.
    """
    return min(RENDER_FACTOR * compact_size + RENDER_SLACK, RENDER_MAX)


def raw_job_data(connection: redis.Redis, job_id: str) -> bytes | None:
    """The job's stored JSON (``[function, null, [delivery with its body], {}]``) as it is, or None."""
    data = connection.hget(f"rq:job:{job_id}", "data")
    return bytes(data) if data is not None else None


def pretty(body: Any, limit: int) -> tuple[str, bool]:
    """The body indented, cut at ``limit`` characters without building more; whether it was cut.

    Text is printable as UTF-8: a lone surrogate (JSON may escape one into a response) is shown
    as its escape instead of failing the page.
    """
    chunks, length = [], 0
    for chunk in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(body):
        chunks.append(chunk)
        length += len(chunk)
        if length > limit:
            return "".join(chunks)[:limit].encode("utf-8", "backslashreplace").decode("utf-8"), True
    return "".join(chunks).encode("utf-8", "backslashreplace").decode("utf-8"), False


@dataclass
class TimelineItem:
    """One moment of a delivery's life."""

    at: datetime | None
    what: str
    detail: str = ""
    tone: str = ""


def timeline(entry: Entry, state: str, registries: Registries, job_started: datetime | None) -> list[TimelineItem]:
    """Received, queued, each attempt started and finished, retries scheduled, failed or done."""
    items = [
        TimelineItem(entry.received_at, "received", f"from {entry.source} ({entry.mode} key)"),
        TimelineItem(entry.received_at, "queued", "job written in the same round trip"),
    ]
    # Each later arrival (accepted again, or a rerun) is appended with its attempts: history is kept.
    arrivals = entry.arrivals or [Arrival(entry.received_at, entry.source, entry.attempts)]
    for index, arrival in enumerate(arrivals):
        if index:
            what = "rerun queued" if arrival.source == "rerun" else f"queued again (from {arrival.source})"
            items.append(TimelineItem(arrival.received_at, what, "earlier attempts kept above", "warn"))
        items += _attempt_items(arrival.attempts)
    if state == "running":
        items.append(TimelineItem(job_started, "running now", "a worker has it", "warn"))
    elif state == "waiting to retry":
        items.append(TimelineItem(registries.scheduled.get(entry.delivery_id), "next try", "waiting to retry", "warn"))
    return items


def _attempt_items(attempts: list[Attempt]) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for attempt in attempts:
        started = datetime.fromtimestamp(attempt.finished_at.timestamp() - attempt.duration_ms / 1000, UTC)
        items.append(TimelineItem(started, f"attempt {attempt.number} started"))
        names = ", ".join(attempt.handlers) or "none"
        if attempt.outcome == "d":
            items.append(
                TimelineItem(
                    attempt.finished_at,
                    f"attempt {attempt.number} done",
                    f"{attempt.duration_ms:g} ms; ran {names}",
                    "ok",
                )
            )
        else:
            failing = ", ".join(attempt.failures) or "?"
            items.append(
                TimelineItem(
                    attempt.finished_at,
                    f"attempt {attempt.number} failed",
                    f"{attempt.duration_ms:g} ms; failing: {failing}; ran {names}",
                    "bad",
                )
            )
            if attempt.outcome == "r":
                items.append(TimelineItem(attempt.finished_at, "retry scheduled", "", "warn"))
            else:
                items.append(TimelineItem(attempt.finished_at, "failed for good", "in the failed registry", "bad"))
    return items


@dataclass
class HandlerState:
    """What became of one handler across the attempts."""

    name: str
    state: str
    attempt: int
    traceback: str = ""


def handler_states(entry: Entry) -> list[HandlerState]:
    """Each handler's latest outcome, with the traceback of its latest failure."""
    found: dict[str, HandlerState] = {}
    for attempt in entry.attempts:
        for name in attempt.handlers:
            found[name] = HandlerState(name, "done", attempt.number)
        for name, text in attempt.failures.items():
            found[name] = HandlerState(name, "failed", attempt.number, text)
    return list(found.values())


def unhandled(connection: redis.Redis, type_: str = "", event: str = "", limit: int = 500) -> list[dict[str, Any]]:
    """Notes of deliveries no handler asked for, newest first, each with its raw form (to delete it)."""
    notes = []
    for raw in connection.lrange(defaults.UNHANDLED_KEY, 0, 4999):
        try:
            note = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(note, dict):
            continue
        if type_ and note.get("type") != type_:
            continue
        if event and (note.get("event") or "completed") != event:
            continue
        note["raw"] = _text(raw)
        notes.append(note)
        if len(notes) >= limit:
            break
    return notes


def reconciliation(connection: redis.Redis, limit: int = 20) -> dict[str, Any]:
    """Recent run summaries and the state of a run requested from the console."""
    return {"runs": RunLog(connection).recent(limit), "run_request": RunRequests(connection).status()}


def ledger_for(connection: redis.Redis, ttl: int) -> Ledger:
    """The ledger reader."""
    return Ledger(connection, ttl)


@dataclass
class RerunTask:
    """One task a rerun queued, and what became of its job (RQ's registries, then the ledger)."""

    task_id: str
    delivery_id: str
    job_id: str
    state: str
    handlers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def reruns(connection: redis.Redis, limit: int = 50) -> list[Run]:
    """The newest reruns first, each with its live queued count."""
    return RunStore(connection).recent(limit)


def rerun_tasks(
    connection: redis.Redis, queue_name: str, ledger_ttl: int, run: Run, limit: int = 100
) -> list[RerunTask]:
    """Up to ``limit`` tasks of a run with their outcome: what RQ says now, else the rerun's attempts in the ledger."""
    registries = Registries.read(connection, queue_name)
    book = Ledger(connection, ledger_ttl)
    started = _when(run.started_at)
    found = []
    for task_id, delivery_id in RunStore(connection).marks(run.run_id, limit):
        job_id = rerun_job_id(run.run_id, delivery_id)
        row = RerunTask(task_id, delivery_id, job_id, "queued")
        entry = book.delivery(delivery_id)
        arrivals = [
            a
            for a in (entry.arrivals if entry else [])
            if a.source == "rerun" and (started is None or a.received_at >= started)
        ]
        if arrivals and arrivals[0].attempts:
            last = arrivals[0].attempts[-1]
            row.state = {"d": "done", "r": "retrying", "f": "failed"}.get(last.outcome, "queued")
            row.handlers = last.handlers
            row.failures = list(last.failures)
        if job_id in registries.running:
            row.state = "running"
        elif job_id in registries.scheduled:
            row.state = "waiting to retry"
        elif job_id in registries.failed:
            row.state = "failed"
        found.append(row)
    return found

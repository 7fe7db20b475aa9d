"""Reconciliation: ask Scale which tasks changed, and queue every state whose callback we never accepted.

Scale gives up on a callback after 20 tries in 24 hours; a receiver down for a day, a wrong
key or a lost Redis would lose those events silently. Each scheduled run lists the tasks
*updated* since the previous complete run (minus RECONCILE_OVERLAP), with no status filter, so
one sweep sees completions, errors, audits, recalls and cancellations alike, however long a
task took. Each task is turned into its current event and put through the *same* path as a
callback (same derivation, validation, delivery identity and atomic dedup), so running it twice,
or while callbacks arrive, never makes a second job.

A window is listed in slices of update time, oldest first, and how far the checked slices reach
is kept in Redis per project (the high-water mark). The API answers newest *created* first
whatever the filter, so "the last page" says nothing about update times; a finished slice does.
A run that fails part-way leaves the mark at the end of its last finished slice, and the next
run starts there: nothing is skipped.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from callback_server import defaults, stats
from callback_server.accept import DUPLICATE, QUARANTINED, QUEUED, SKIPPED, AcceptPath, event_name
from callback_server.config import Settings
from callback_server.deliveries import RECONCILE, DeliveryQueue
from callback_server.exceptions import CallbackServerError, UnkeepableError
from callback_server.quarantine import Quarantine
from callback_server.render import shorten
from callback_server.scale_api import ScaleAPI, ScaleAPIError
from callback_server.times import parse_instant, stamp

log = logging.getLogger(__name__)

SLICE_SECONDS = 6 * 3600
"""A window is listed in slices of this much time, oldest first; the mark advances per slice."""

RUNS_KEY = "scb:reconcile:runs"
"""Redis list of run summaries, newest first."""

RUNS_KEPT = 200
"""How many run summaries are kept."""

LOCK_KEY = "scb:reconcile:lock"
"""Held while a run is going, so two clocks never reconcile at once."""

MARKS_KEY = "scb:reconcile:marks"
"""Redis hash: per project (or the account), the update time up to which every task was checked."""

BY_UPDATED = "updated"
BY_COMPLETED = "completed"
BY_CREATED = "created"
WINDOW_PARAMETERS = {
    BY_UPDATED: ("updated_after", "updated_before"),
    BY_COMPLETED: ("completed_after", "completed_before"),
    BY_CREATED: ("start_time", "end_time"),
}
"""What a window bounds, and the list API's parameters for it."""

WINDOW_FIELDS = {BY_UPDATED: "updated_at", BY_COMPLETED: "completed_at", BY_CREATED: "created_at"}
"""The task field each kind of window bounds."""

ACCOUNT = "(account)"
"""The scope of a run without SCALE_PROJECTS: the account listed as a whole."""

_EDGE = timedelta(milliseconds=1)
"""Slices overlap by this much, so a task updated exactly on a boundary is in one of them whether
the API's bounds are inclusive or not."""


@dataclass
class RunSummary:
    """What one reconciliation run found and did, per event, and how far it got."""

    run_id: str
    started_at: str
    window_start: str
    window_end: str
    by: str = BY_UPDATED
    scheduled: bool = False
    scope: str = ""
    finished_at: str = ""
    seen: int = 0
    already_had: int = 0
    queued: int = 0
    quarantined: int = 0
    skipped: int = 0
    task_errors: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: dict[str, dict[str, int]] = field(default_factory=dict)
    reached: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    queued_task_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """A kept summary; fields added or dropped since it was written are tolerated."""
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in known})

    def count(self, event: str, outcome: str) -> None:
        """One task's outcome (``queued``, ``already_had``, ``quarantined``, ``errors``) under its event."""
        per_event = self.events.setdefault(event, {})
        per_event[outcome] = per_event.get(outcome, 0) + 1


def run_counts(summary: RunSummary) -> stats.Increments:
    """A run's contribution to the shared counters (/metrics): the run, and each task's outcome by event."""
    total = {stats.field("reconcile_run", summary.scope or "-", "complete" if summary.complete else "incomplete"): 1.0}
    for event, outcomes in summary.events.items():
        for outcome, count in outcomes.items():
            total[stats.field("reconcile_task", event, outcome)] = float(count)
    return total, {}


class RunLog:
    """Run summaries in Redis, newest first, so `reconcile runs` and the dashboard can show them."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def add(self, summary: RunSummary, pipe: Any = None) -> None:
        """Keep a summary (and forget the oldest beyond RUNS_KEPT); on ``pipe`` when given, else now."""
        data = summary.as_dict()
        data["queued_task_ids"] = data["queued_task_ids"][:100]
        own = pipe is None
        pipe = self.connection.pipeline(transaction=True) if own else pipe
        pipe.lpush(RUNS_KEY, json.dumps(data))
        pipe.ltrim(RUNS_KEY, 0, RUNS_KEPT - 1)
        if own:
            pipe.execute()

    def recent(self, limit: int = 20) -> list[RunSummary]:
        """The newest summaries first."""
        raws = self.connection.lrange(RUNS_KEY, 0, max(limit, 1) - 1)
        return [RunSummary.from_dict(json.loads(raw)) for raw in raws]


class Marks:
    """The high-water marks: per scope, the update time up to which every task was checked."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def get(self, scope: str) -> datetime | None:
        """The mark of a scope; None before its first complete slice (or if the stored one is unreadable)."""
        raw = self.connection.hget(MARKS_KEY, scope)
        if raw is None:
            return None
        return parse_instant(raw)

    def advance(self, scope: str, moment: datetime) -> None:
        """Move a scope's mark forward to ``moment`` (never back: an earlier run may have got further)."""
        current = self.get(scope)
        if current is None or moment > current:
            self.connection.hset(MARKS_KEY, scope, stamp(moment))

    def all(self) -> dict[str, str]:
        """Every scope's mark, as stored."""
        return {k.decode(): v.decode() for k, v in self.connection.hgetall(MARKS_KEY).items()}


@dataclass(frozen=True)
class Sweep:
    """One scope's part of a run: a project (None: the whole account) over [start, end)."""

    project: str | None
    start: datetime
    end: datetime

    @property
    def scope(self) -> str:
        """The name its mark is kept under and its summary lines use."""
        return self.project if self.project is not None else ACCOUNT


class Reconciler:
    """Queues task states whose delivery was never accepted, through the callback path."""

    def __init__(
        self,
        api: ScaleAPI,
        deliveries: DeliveryQueue,
        quarantine: Quarantine,
        *,
        projects: tuple[str, ...] = (),
        lookback: int = defaults.RECONCILE_LOOKBACK,
        overlap: int = defaults.RECONCILE_OVERLAP,
        dedup_ttl: int = defaults.DEDUP_TTL,
        slice_seconds: float = SLICE_SECONDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.api = api
        self.accept = AcceptPath(deliveries, quarantine)
        self.connection = deliveries.connection
        self.projects = projects
        self.lookback = timedelta(seconds=lookback)
        self.overlap = timedelta(seconds=overlap)
        self.dedup_ttl = timedelta(seconds=dedup_ttl)
        self.slice = timedelta(seconds=slice_seconds)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.marks = Marks(self.connection)

    def close(self) -> None:
        """Release the API client's connections."""
        self.api.close()

    def now(self) -> datetime:
        """The clock, to the millisecond (the precision of the API's timestamps)."""
        moment = self.clock().astimezone(UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def run_scheduled(self) -> RunSummary:
        """One scheduled run: per scope, tasks updated since its mark minus the overlap; marks advance."""
        end = self.now()
        summary = self._new_summary(BY_UPDATED)
        summary.scheduled = True
        sweeps = [Sweep(project, self._scheduled_start(project, end, summary), end) for project in self._scopes()]
        return self._run(sweeps, BY_UPDATED, summary, advance_marks=True)

    def run(self, start: datetime, end: datetime, *, by: str = BY_UPDATED) -> RunSummary:
        """A sweep by hand over [start, end] by update, completion or creation time; marks are left alone."""
        if by not in WINDOW_PARAMETERS:
            raise ValueError(f"a window is by one of {', '.join(WINDOW_PARAMETERS)}, not {by!r}")
        summary = self._new_summary(by)
        forgotten = self.now() - self.dedup_ttl
        if start.astimezone(UTC) < forgotten:
            summary.notes.append(
                f"the window starts more than DEDUP_TTL ago: states accepted before {stamp(forgotten)} are "
                "forgotten and may be queued again (handlers already done for them are skipped within EFFECTS_TTL)"
            )
        sweeps = [Sweep(project, start.astimezone(UTC), end.astimezone(UTC)) for project in self._scopes()]
        return self._run(sweeps, by, summary, advance_marks=False)

    def _scopes(self) -> list[str | None]:
        return list(self.projects) if self.projects else [None]

    def _new_summary(self, by: str) -> RunSummary:
        if self.projects:
            scope = "projects " + ", ".join(self.projects)
        else:
            scope = "the whole account (SCALE_PROJECTS is unset)"
        return RunSummary(
            run_id=uuid.uuid4().hex[:12], started_at=stamp(), window_start="", window_end="", by=by, scope=scope
        )

    def _scheduled_start(self, project: str | None, end: datetime, summary: RunSummary) -> datetime:
        """Where a scope's scheduled window starts: its mark minus the overlap, within DEDUP_TTL."""
        scope = project if project is not None else ACCOUNT
        floor = end - self.dedup_ttl
        mark = self.marks.get(scope)
        if mark is None:
            summary.notes.append(f"{scope}: first run, from the look-back ({stamp(end - self.lookback)})")
            return end - self.lookback
        if mark < floor:
            start = end - self.lookback
            gap = (
                f"GAP {scope}: the last sweep reached {stamp(mark)}, longer ago than DEDUP_TTL; started from the "
                f"look-back instead: tasks updated from {stamp(mark)} to {stamp(start)} were NOT checked "
                f"(sweep them by hand with --since/--until; states accepted then may be queued again)"
            )
            summary.notes.append(gap)
            log.error("RECONCILIATION GAP: %s", gap, extra={"window": f"{stamp(mark)}..{stamp(start)}"})
            return start
        # Past DEDUP_TTL the overlap would re-queue forgotten states; the mark itself is within it.
        return min(max(mark - self.overlap, floor), end)

    def _run(self, sweeps: list[Sweep], by: str, summary: RunSummary, *, advance_marks: bool) -> RunSummary:
        summary.window_start = stamp(min(s.start for s in sweeps))
        summary.window_end = stamp(max(s.end for s in sweeps))
        failed = False
        for sweep in sweeps:
            try:
                self._sweep(sweep, by, summary, advance_marks=advance_marks)
            except ScaleAPIError as exc:
                failed = True
                summary.errors.append(f"{sweep.scope}: {exc.message}")
                if exc.stops_run:
                    break
            except redis.RedisError as exc:
                failed = True
                summary.errors.append(f"redis: {type(exc).__name__}: {exc}")
                break
        summary.complete = not failed
        summary.finished_at = stamp()
        log_fields = {"window": f"{summary.window_start}..{summary.window_end}", "count": summary.queued}
        if summary.complete:
            log.info("reconciliation done", extra={**log_fields, "outcome": "complete"})
        else:
            log.error(
                "RECONCILIATION INCOMPLETE: %s", "; ".join(summary.errors), extra={**log_fields, "outcome": "failed"}
            )
        try:
            pipe = self.connection.pipeline(transaction=False)
            RunLog(self.connection).add(summary, pipe)
            stats.apply_now(pipe, run_counts(summary))
            pipe.execute()
        except redis.RedisError as exc:
            summary.errors.append(f"could not keep the run summary: {type(exc).__name__}")
        return summary

    def _sweep(self, sweep: Sweep, by: str, summary: RunSummary, *, advance_marks: bool) -> None:
        """List one scope slice by slice, oldest first; after each finished slice it is checked up to its end."""
        after, before = WINDOW_PARAMETERS[by]
        cursor = sweep.start
        summary.reached[sweep.scope] = stamp(cursor)
        on_edge: set[tuple[str, str]] = set()  # listed by the previous slice too: not counted twice
        while cursor < sweep.end:
            slice_end = min(cursor + self.slice, sweep.end)
            params: dict[str, Any] = {after: stamp(cursor - _EDGE), before: stamp(slice_end + _EDGE)}
            if sweep.project is not None:
                params["project"] = sweep.project
            previous_edge, on_edge = on_edge, set()
            for task in self.api.list_tasks(params):
                key, at_end = _edge_key(task, WINDOW_FIELDS[by], slice_end)
                if key is not None and key in previous_edge:
                    continue
                if at_end and key is not None:
                    on_edge.add(key)
                self._one(task, summary)
            cursor = slice_end
            summary.reached[sweep.scope] = stamp(cursor)
            if advance_marks:
                self.marks.advance(sweep.scope, cursor)

    def _one(self, task: Any, summary: RunSummary) -> None:
        """One task of the answer: its current event, offered to the accept path. Never raises but for Redis."""
        summary.seen += 1
        try:
            offered = self.accept.offer_task(task, source=RECONCILE)
        except redis.RedisError:
            raise
        except Exception as exc:  # not even quarantined: one odd task must not end the run; it is named
            task_id = shorten(task.get("task_id") if isinstance(task, dict) else "?", 80)
            cause = exc.cause if isinstance(exc, UnkeepableError) else type(exc).__name__
            error = exc.error if isinstance(exc, UnkeepableError) else type(exc).__name__
            summary.task_errors += 1
            summary.count(event_name(task), "errors")
            summary.errors.append(f"task {task_id}: {cause}, and not kept: {error}")
            log.error(
                "reconciled task could not be handled or kept",
                extra={"task_id": task_id, "error": error, "outcome": "error"},
            )
            return
        if offered.outcome == SKIPPED:
            summary.skipped += 1
            return
        if offered.outcome == QUEUED:
            summary.queued += 1
            summary.queued_task_ids.append(offered.task_id)
        elif offered.outcome == DUPLICATE:
            summary.already_had += 1
        else:
            summary.quarantined += 1
        summary.count(offered.event, TASK_OUTCOMES[offered.outcome])


TASK_OUTCOMES = {QUEUED: "queued", DUPLICATE: "already_had", QUARANTINED: "quarantined"}
"""How a run's summary counts each offer's outcome, per event (stored in its history as these words)."""


def _edge_key(task: Any, name: str, slice_end: datetime) -> tuple[tuple[str, str] | None, bool]:
    """A task's id and window time, and whether it sits at the end of its slice (the next one lists it too)."""
    if not isinstance(task, dict):
        return None, False
    moment = parse_instant(task.get(name))
    key = (str(task.get("task_id")), str(task.get(name)))
    return key, moment is not None and moment >= slice_end - _EDGE


def build_reconciler(settings: Settings, connection: redis.Redis, **api_options: Any) -> Reconciler:
    """A reconciler wired to SCALE_API_URL / SCALE_API_KEY / SCALE_PROJECTS and the callback accept path."""
    if settings.scale_api_key is None:
        raise CallbackServerError("SCALE_API_KEY is not set: the reconciler needs an API key to list tasks")
    api = ScaleAPI(settings.scale_api_url, settings.scale_api_key, **api_options)
    return Reconciler(
        api,
        DeliveryQueue.from_settings(settings, connection),
        Quarantine(connection, ttl=settings.quarantine_ttl),
        projects=settings.scale_projects,
        lookback=settings.reconcile_lookback,
        overlap=settings.reconcile_overlap,
        dedup_ttl=settings.dedup_ttl,
    )


def run_locked(reconciler: Reconciler, lock_ttl: int, sweep: Callable[[], RunSummary]) -> RunSummary | None:
    """Run ``sweep`` unless another run holds the lock (then None): two clocks must not overlap."""
    lock = reconciler.connection.lock(LOCK_KEY, timeout=lock_ttl, blocking=False)
    if not lock.acquire(blocking=False):
        return None
    try:
        return sweep()
    finally:
        try:
            lock.release()
        except redis.RedisError:
            pass  # it expires on its own

"""The clock process: the reconciler on its schedule, and the runs the console asks for in between.

``python -m callback_server reconcile --schedule`` (the Procfile's ``clock``) runs here; a sweep
by hand runs one :func:`run_once` and prints the same lines to a terminal. Its output is log lines
in the format of every other process (LOG_FORMAT).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import redis

from callback_server.config import Settings
from callback_server.reconcile import Reconciler, RunSummary, run_locked
from callback_server.reconcile_request import RunRequests
from callback_server.render import printable

log = logging.getLogger(__name__)

MIN_LOCK_TTL = 300
"""Seconds a run's lock lasts at least: longer than a run takes, whatever RECONCILE_INTERVAL is."""


def run_once(reconciler: Reconciler, settings: Settings, sweep: Callable[[], RunSummary]) -> RunSummary | None:
    """One run under the reconcile lock (None if another holds it); Redis errors are raised."""
    return run_locked(reconciler, max(settings.reconcile_interval, MIN_LOCK_TTL), sweep)


def run_forever(reconciler: Reconciler, settings: Settings, sweep: Callable[[], RunSummary]) -> None:
    """Run every RECONCILE_INTERVAL, or sooner when the console asks, until the process is stopped.

    A Redis error skips one run and the clock keeps going: the mark did not move, so the next run
    covers the same window.
    """
    requests = RunRequests(reconciler.connection)
    requested = False
    while True:
        try:
            summary = run_once(reconciler, settings, sweep)
        except redis.RedisError as exc:
            log.warning("RECONCILIATION SKIPPED: redis: %s", type(exc).__name__)
            _report(requests, requested, None, f"skipped: redis: {type(exc).__name__}")
        else:
            if summary is None:
                log.warning("another reconciliation is running; skipped")
                _report(requests, requested, None, "another reconciliation was running; skipped")
            else:
                for line, is_error in summary_lines(summary):
                    log.log(logging.WARNING if is_error else logging.INFO, line.strip())
                _report(requests, requested, summary.run_id, summary_line(summary))
        requested = requests.wait(settings.reconcile_interval)


def summary_lines(summary: RunSummary) -> Iterator[tuple[str, bool]]:
    """A run's summary as lines, each with whether it reports a problem (stderr, or a warning)."""
    yield (
        f"window ({summary.by}) {summary.window_start} .. {summary.window_end}: seen {summary.seen}, "
        f"already had {summary.already_had}, queued {summary.queued}, quarantined {summary.quarantined}, "
        f"skipped {summary.skipped}, errors {len(summary.errors)}",
        False,
    )
    yield f"  scope: {summary.scope}", False
    for event, counts in sorted(summary.events.items()):
        outcomes = ", ".join(f"{outcome.replace('_', ' ')} {n}" for outcome, n in sorted(counts.items()))
        yield f"  {event}: {outcomes}", False
    for scope, reached in summary.reached.items():
        yield f"  {scope}: checked up to {reached}", False
    # Task ids, notes and errors come from Scale's API answers: escaped like every sender field.
    for note in summary.notes:
        yield printable(f"  note: {note}"), False
    for task_id in summary.queued_task_ids:
        yield printable(f"  queued {task_id}"), False
    for error in summary.errors:
        yield printable(f"  error: {error}"), True
    if not summary.complete:
        if summary.scheduled:
            after = "the next run resumes from how far each project got"
        else:
            after = "sweep again from how far each project got (the scheduled mark was left alone)"
        yield f"RECONCILIATION INCOMPLETE: the window was not fully checked; {after}", True


def summary_line(summary: RunSummary) -> str:
    """One line of a run's outcome, for the console."""
    state = "complete" if summary.complete else "INCOMPLETE"
    return (
        f"{state}: seen {summary.seen}, already had {summary.already_had}, queued {summary.queued}, "
        f"quarantined {summary.quarantined}, skipped {summary.skipped}, errors {len(summary.errors)}"
    )


def _report(requests: RunRequests, requested: bool, run_id: str | None, line: str) -> None:
    """Tell the console how the run it asked for went (best effort: the run itself is logged)."""
    if not requested:
        return
    try:
        requests.finished(run_id, line)
    except redis.RedisError:
        log.warning("could not record the requested run's result: redis unavailable")

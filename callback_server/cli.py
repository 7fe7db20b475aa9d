"""The project's one command line: ``python -m callback_server <command>``.

Everything an operator does by hand lives here (quarantine, failed jobs, reconciliation,
the local stack), so it leaves a trace in the shell history rather than behind a web form.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from callback_server import clock, defaults, jobs
from callback_server.accept import AcceptPath
from callback_server.config import Settings
from callback_server.connection import connect
from callback_server.devserver import dev, local_stack_env
from callback_server.doctor import FAIL, PROBE_TIMEOUT, run_doctor
from callback_server.exceptions import CallbackServerError, NotFoundError
from callback_server.fetch import fetch_tasks
from callback_server.jobs import NOT_FAILED, failure_line, replay_failed
from callback_server.logs import configure_logging
from callback_server.quarantine import Quarantine
from callback_server.reconcile import (
    BY_COMPLETED,
    BY_CREATED,
    BY_UPDATED,
    RUNS_KEPT,
    RunLog,
    RunSummary,
    build_reconciler,
)
from callback_server.render import printable
from callback_server.rerun_cli import rerun_command
from callback_server.sentry import init_sentry
from callback_server.times import parse_instant, stamp
from workers.listing import handlers_command

log = logging.getLogger(__name__)


def _settings() -> Settings:
    """The configuration from the environment; beside `make run` (REDIS_URL unset), its Redis and keys.

    The note goes to stderr so output stays pipeable; a deployment sets REDIS_URL, so there the
    environment alone decides and a missing variable still stops the command.
    """
    env, source = local_stack_env(os.environ)
    if source is not None:
        click.echo(f"REDIS_URL is unset: using make run's Redis {env['REDIS_URL']} (from {source})", err=True)
    try:
        return Settings.from_env(env)
    except CallbackServerError as exc:
        raise click.ClickException(exc.message) from None


def _echo_json(data: Any) -> None:
    # ensure_ascii (the default) writes every control character as a \u escape.
    click.echo(json.dumps(data, indent=2, default=str))


def _quarantine(settings: Settings) -> Quarantine:
    return Quarantine(connect(settings), ttl=settings.quarantine_ttl)


def _expiry(expires_in: int | None) -> str:
    """How long until a quarantined delivery is forgotten, as an operator reads it."""
    if expires_in is None:
        return "never"
    days, rest = divmod(expires_in, 86400)
    return f"{days}d{rest // 3600:02d}h" if days else f"{rest // 3600}h{rest % 3600 // 60:02d}m"


class _Commands(click.Group):
    """The command group: Redis being away is one line naming the error, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except redis.RedisError as exc:
            raise click.ClickException(f"redis: {type(exc).__name__}: {printable(str(exc))}") from None


@click.group(cls=_Commands)
def cli() -> None:
    """Operate the Scale callback receiver."""


cli.add_command(dev)
cli.add_command(handlers_command)  # what CALLBACK_HANDLERS loads (workers/listing.py)


# --- quarantine ----------------------------------------------------------------------------------


@cli.group()
def quarantine() -> None:
    """Authenticated deliveries that failed validation, kept for replay."""


@quarantine.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def quarantine_list(limit: int) -> None:
    """The newest quarantined deliveries, one per line (no bodies): when, size, expires in, reason."""
    store = _quarantine(_settings())
    items = store.summaries(limit)
    for item in items:
        s = item.summary()
        when = f"{s['last_received_at']}  x{s['times_received']}"
        click.echo(
            f"{s['id']}  {when}  {s['size']:>8} B  {s['mode']:<4}  expires in {_expiry(s['expires_in']):<6}  "
            f"{printable(s['reason'])}"
        )
    click.echo(f"{len(items)} of {store.count()} quarantined", err=True)


@quarantine.command("show")
@click.argument("quarantine_id")
def quarantine_show(quarantine_id: str) -> None:
    """One quarantined delivery: why, when, and its body as received."""
    try:
        item = _quarantine(_settings()).get(quarantine_id)
    except NotFoundError as exc:
        raise click.ClickException(printable(exc.message)) from None
    _echo_json({**item.summary(), "details": item.details, "content_type": item.content_type})
    click.echo(f"expires in {_expiry(item.expires_in)} (at {item.expires_at or 'never'})")
    click.echo("--- body (control characters shown escaped) ---")
    click.echo(printable(item.body.decode("utf-8", errors="backslashreplace"), multiline=True))


@quarantine.command("replay")
@click.argument("quarantine_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="replay every quarantined delivery")
def quarantine_replay(quarantine_ids: tuple[str, ...], replay_all: bool) -> None:
    """Validate again and queue (through the same dedup as callbacks); kept if still invalid."""
    if not quarantine_ids and not replay_all:
        raise click.UsageError("name quarantine ids, or give --all")
    settings = _settings()
    path = AcceptPath.from_settings(settings, connect(settings))
    ids = path.quarantine.ids(limit=1_000_000) if replay_all else list(quarantine_ids)
    failures = 0
    for quarantine_id in ids:
        done = path.replay(quarantine_id)
        if done.accepted:
            click.echo(printable(f"{quarantine_id}  {done.outcome}  task {done.task_id}"))
            continue
        failures += 1
        detail = f"{done.reason}: {json.dumps(done.details)}" if done.details is not None else done.reason
        click.echo(printable(f"{quarantine_id}  {done.replay_outcome}: {detail}"), err=True)
    if failures:
        sys.exit(1)


@quarantine.command("delete")
@click.argument("quarantine_ids", nargs=-1, required=True)
def quarantine_delete(quarantine_ids: tuple[str, ...]) -> None:
    """Forget quarantined deliveries for good."""
    store = _quarantine(_settings())
    for quarantine_id in quarantine_ids:
        try:
            store.delete(quarantine_id)
        except NotFoundError as exc:
            raise click.ClickException(printable(exc.message)) from None
        click.echo(f"{quarantine_id}  deleted")


# --- failed jobs ---------------------------------------------------------------------------------


def _failed_registry(settings: Settings, connection: redis.Redis) -> FailedJobRegistry:
    queue = Queue(settings.callback_queue, connection=connection, serializer=JSONSerializer)
    return FailedJobRegistry(queue=queue)


@cli.group()
def failed() -> None:
    """Deliveries whose handlers ran out of retries."""


@failed.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def failed_list(limit: int) -> None:
    """Failed jobs, newest last: id, description and the last line of the traceback."""
    settings = _settings()
    connection = connect(settings)
    registry = _failed_registry(settings, connection)
    ids = registry.get_job_ids(0, limit - 1, cleanup=False)
    for job in Job.fetch_many(ids, connection=connection, serializer=JSONSerializer):
        if job is None:
            continue
        # The description holds the task id and the failure line a handler's message: both can
        # carry what a sender chose.
        click.echo(printable(f"{job.id}  {job.ended_at or ''}  {job.description}  | {failure_line(job)}"))
    click.echo(f"{len(ids)} of {registry.get_job_count(cleanup=False)} failed", err=True)


@failed.command("replay")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="replay every failed job")
def failed_replay(job_ids: tuple[str, ...], replay_all: bool) -> None:
    """Put failed jobs back on the queue with all their retries; handlers that had completed are skipped."""
    if not job_ids and not replay_all:
        raise click.UsageError("name job ids, or give --all")
    settings = _settings()
    connection = connect(settings)
    registry = _failed_registry(settings, connection)
    ids = registry.get_job_ids(cleanup=False) if replay_all else list(job_ids)
    missing = 0
    for job_id in ids:
        tries = replay_failed(registry, job_id)
        if tries is None:
            missing += 1
            click.echo(printable(f"{job_id}  {NOT_FAILED}"), err=True)
            continue
        click.echo(f"{job_id}  requeued ({tries} tries)")
    if missing:
        sys.exit(1)


# --- jobs waiting on their retry schedule ---------------------------------------------------------


@cli.group()
def waiting() -> None:
    """Deliveries whose handlers failed and wait for their next try (RQ's retry schedule)."""


@waiting.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def waiting_list(limit: int) -> None:
    """Jobs waiting to retry, soonest first: id, next try, description, the failing handler and its error."""
    settings = _settings()
    connection = connect(settings)
    found = jobs.waiting(connection, settings.callback_queue, limit)
    for job, retry_at in found:
        next_try = stamp(retry_at, timespec="seconds")
        error = jobs.last_error(job, settings.ledger_ttl)
        click.echo(printable(f"{job.id}  next try {next_try}  {job.description}  | {error}"))
    total = jobs.scheduled_registry(connection, settings.callback_queue).get_job_count(cleanup=False)
    click.echo(f"{len(found)} of {total} waiting to retry", err=True)


@waiting.command("retry-now")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="every job waiting to retry")
def waiting_retry_now(job_ids: tuple[str, ...], retry_all: bool) -> None:
    """Put jobs waiting for their next try on the queue now (say, after a fix was deployed); they keep their retries."""
    if not job_ids and not retry_all:
        raise click.UsageError("name job ids, or give --all")
    if job_ids and retry_all:
        raise click.UsageError("name job ids or give --all, not both")
    settings = _settings()
    connection = connect(settings)
    registry = jobs.scheduled_registry(connection, settings.callback_queue)
    ids = registry.get_job_ids(cleanup=False) if retry_all else list(job_ids)
    missing = 0
    for job_id in ids:
        if jobs.retry_now(connection, settings.callback_queue, job_id):
            click.echo(printable(f"{job_id}  queued now"))
        else:
            missing += 1
            click.echo(printable(f"{job_id}  not waiting to retry"), err=True)
    click.echo(f"{len(ids) - missing} of {len(ids)} queued now", err=True)
    if missing:
        sys.exit(1)


cli.add_command(rerun_command)


# --- reconciliation ------------------------------------------------------------------------------


def _parse_when(value: str, option: str) -> datetime:
    moment = parse_instant(value)
    if moment is None:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint=option)
    return moment


@dataclass(frozen=True)
class _ManualWindow:
    """A window named on the command line: by update, completion or creation time."""

    by: str
    since: str | None
    until: str | None
    hours: float | None

    def bounds(self) -> tuple[datetime, datetime]:
        """Start and end, checked; parsed anew each time, so a scheduled loop would move with the clock."""
        end = _parse_when(self.until, f"--{self.by}-until") if self.until else datetime.now(UTC)
        if self.since:
            start = _parse_when(self.since, f"--{self.by}-since")
        else:
            assert self.hours is not None
            start = end - timedelta(hours=self.hours)
        if start >= end:
            raise click.BadParameter(f"the window is empty: --{self.by}-since must be before --{self.by}-until")
        return start, end


def _manual_window(
    updated: tuple[str | None, str | None],
    hours: float | None,
    completed: tuple[str | None, str | None],
    created: tuple[str | None, str | None],
) -> _ManualWindow | None:
    """The one window the options name, or None for the scheduled window (from the mark)."""
    named = [
        (by, since, until)
        for by, (since, until) in ((BY_UPDATED, updated), (BY_COMPLETED, completed), (BY_CREATED, created))
        if since or until
    ]
    if hours is not None:
        if updated[0]:
            raise click.UsageError("give --since or --hours, not both")
        named = [w for w in named if w[0] != BY_UPDATED] + [(BY_UPDATED, None, updated[1])]
    if len(named) > 1:
        raise click.UsageError("give one window: updated (--since/--until/--hours), --completed-* or --created-*")
    if not named:
        return None
    by, since, until = named[0]
    if not since and hours is None:
        option = "--since" if by == BY_UPDATED else f"--{by}-since"
        raise click.UsageError(f"{option} is required with its --until")
    return _ManualWindow(by, since, until, hours if by == BY_UPDATED else None)


@cli.group("reconcile", invoke_without_command=True)
@click.option(
    "--since",
    "--updated-since",
    "since",
    help="sweep tasks UPDATED since this ISO 8601 time (by hand; the scheduled mark is left alone)",
)
@click.option("--until", "--updated-until", "until", help="end of the updated window (default: now)")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), help="updated window length back from --until")
@click.option("--completed-since", help="sweep tasks COMPLETED since this ISO 8601 time (completed_after)")
@click.option("--completed-until", help="end of the completed window (completed_before; default: now)")
@click.option("--created-since", help="sweep tasks CREATED since this ISO 8601 time (start_time)")
@click.option("--created-until", help="end of the created window (end_time; default: now)")
@click.option("--project", "projects", multiple=True, help="project to sweep (repeatable; default: SCALE_PROJECTS)")
@click.option("--schedule", is_flag=True, help="keep running every RECONCILE_INTERVAL seconds (the clock process)")
@click.pass_context
def reconcile_command(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    hours: float | None,
    completed_since: str | None,
    completed_until: str | None,
    created_since: str | None,
    created_until: str | None,
    projects: tuple[str, ...],
    schedule: bool,
) -> None:
    """Queue every task state whose callback never arrived (same events, validation and dedup as callbacks).

    Without a window: tasks updated since the last complete run (minus RECONCILE_OVERLAP), which
    moves the high-water mark, as the clock does. With one: a sweep by hand over that window.
    """
    if ctx.invoked_subcommand is not None:
        return
    window = _manual_window((since, until), hours, (completed_since, completed_until), (created_since, created_until))
    if window is not None and schedule:
        raise click.UsageError("--schedule runs the scheduled window; give no window with it")
    if window is not None:
        window.bounds()  # bad input fails before any request
    configure_logging()
    settings = _settings()
    init_sentry(settings, "clock")
    if projects:
        settings = replace(settings, scale_projects=tuple(dict.fromkeys(projects)))
    connection = connect(settings)
    try:
        reconciler = build_reconciler(settings, connection)
    except CallbackServerError as exc:
        raise click.ClickException(exc.message) from None

    def sweep() -> RunSummary:
        if window is None:
            return reconciler.run_scheduled()
        start, end = window.bounds()
        return reconciler.run(start, end, by=window.by)

    try:
        if schedule:
            clock.run_forever(reconciler, settings, sweep)
        try:
            summary = clock.run_once(reconciler, settings, sweep)
        except redis.RedisError as exc:
            raise click.ClickException(f"redis: {type(exc).__name__}: {exc}") from None
    finally:
        reconciler.close()
    if summary is None:
        click.echo("another reconciliation is running; skipped", err=True)
        return
    for line, is_error in clock.summary_lines(summary):
        click.echo(line, err=is_error)
    if not summary.complete or summary.task_errors:
        ctx.exit(1)


@reconcile_command.command("runs")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, RUNS_KEPT))
def reconcile_runs(limit: int) -> None:
    """Summaries of recent reconciliation runs, newest first."""
    for summary in RunLog(connect(_settings())).recent(limit):
        state = "complete" if summary.complete else "INCOMPLETE"
        click.echo(
            f"{summary.started_at}  {state:<10}  {summary.by} {summary.window_start}..{summary.window_end}  "
            f"seen {summary.seen}  had {summary.already_had}  queued {summary.queued}  "
            f"quarantined {summary.quarantined}  errors {len(summary.errors)}  [{summary.scope}]"
        )
        for error in summary.errors:
            click.echo(printable(f"    {error}"))
        for note in summary.notes:
            click.echo(printable(f"    note: {note}"))


@cli.group()
def unhandled() -> None:
    """Deliveries no handler asked for: a type nobody serves, or an event nobody opted into."""


@unhandled.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def unhandled_list(limit: int) -> None:
    """The newest unhandled deliveries: when, type, event, task and delivery ids."""
    connection = connect(_settings())
    notes = connection.lrange(defaults.UNHANDLED_KEY, 0, limit - 1)
    total = connection.llen(defaults.UNHANDLED_KEY)
    for raw in notes:
        note = json.loads(raw)
        event = note.get("event") or "completed"
        if note.get("review_status"):
            event = f"{event}:{note['review_status']}"
        click.echo(
            "  ".join(printable(note.get(name) or "-") for name in ("recorded_at", "type"))
            + "  "
            + printable(event)
            + "  "
            + "  ".join(printable(note.get(name) or "-") for name in ("task_id", "delivery_id"))
        )
    click.echo(f"{len(notes)} of {total} unhandled deliveries shown (newest first)", err=True)


# --- doctor --------------------------------------------------------------------------------------


@cli.command("doctor")
@click.option("--url", help="the public callback URL (https://<app>/callback): send the end-to-end probe through it")
@click.option(
    "--timeout",
    default=PROBE_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=1),
    help="seconds to wait for a worker to process the probe",
)
def doctor_command(url: str | None, timeout: float) -> None:
    """Is this deployment set up right? One line per check, with what to do; non-zero if any fails.

    Configuration, keys, Redis (reachable, noeviction, memory, persistence, TLS), Scale's API
    key (one list call per project), workers, the clock's last run, and with --url a probe
    callback (signed with the test key) that a worker must process. No handler sees the probe.
    """
    env, source = local_stack_env(os.environ)
    if source is not None:
        click.echo(f"REDIS_URL is unset: using make run's Redis {env['REDIS_URL']} (from {source})", err=True)
    checks = run_doctor(env, url=url, probe_timeout=timeout)
    for check in checks:
        click.echo(check.line())
    failed = [check for check in checks if check.status == FAIL]
    click.echo(
        f"{len(failed)} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed", err=True
    )
    if failed:
        sys.exit(1)


# --- fetch ---------------------------------------------------------------------------------------


@cli.command("fetch")
@click.argument("task_ids", nargs=-1, required=True)
def fetch_command(task_ids: tuple[str, ...]) -> None:
    """Ask Scale's API for these tasks and queue each state never accepted (same path as callbacks).

    One line per task: queued, already had, quarantined, no event yet, or not found. Exits
    non-zero when a task was not found or could not be asked for.
    """
    settings = _settings()
    try:
        results = fetch_tasks(settings, connect(settings), list(dict.fromkeys(task_ids)))
    except CallbackServerError as exc:
        raise click.ClickException(exc.message) from None
    except redis.RedisError as exc:
        raise click.ClickException(f"redis: {type(exc).__name__}: {exc}") from None
    for result in results:
        click.echo(printable(result.line()))
    if any(result.failed for result in results):
        sys.exit(1)


def main() -> None:
    """Entry point of ``python -m callback_server``."""
    cli(prog_name="python -m callback_server")

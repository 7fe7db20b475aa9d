"""The project's one command line: ``python -m callback_server <command>``.

Everything an operator does by hand lives here (quarantine, failed jobs, reconciliation,
the local stack), so it leaves a trace in the shell history rather than behind a web form.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from callback_server.config import Settings
from callback_server.connection import connect
from callback_server.deliveries import REPLAY, Delivery, DeliveryQueue
from callback_server.devserver import dev
from callback_server.exceptions import CallbackServerError, InvalidCallbackError, NotFoundError
from callback_server.jobs import failure_line, reset_retries
from callback_server.logs import configure_logging
from callback_server.quarantine import Quarantine
from callback_server.reconcile import RUNS_KEPT, Reconciler, RunLog, RunSummary, build_reconciler, run_locked
from callback_server.schemas import load_callback, parse_timestamp


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except CallbackServerError as exc:
        raise click.ClickException(exc.message) from None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group()
def cli() -> None:
    """Operate the Scale callback receiver."""


cli.add_command(dev)


# --- quarantine ----------------------------------------------------------------------------------


@cli.group()
def quarantine() -> None:
    """Authenticated deliveries that failed validation, kept for replay."""


@quarantine.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def quarantine_list(limit: int) -> None:
    """The newest quarantined deliveries, one per line (no bodies)."""
    store = Quarantine(connect(_settings()))
    items = store.recent(limit)
    for item in items:
        s = item.summary()
        when = f"{s['last_received_at']}  x{s['times_received']}"
        click.echo(f"{s['id']}  {when}  {s['size']:>8} B  {s['mode']:<4}  {s['reason']}")
    click.echo(f"{len(items)} of {store.count()} quarantined", err=True)


@quarantine.command("show")
@click.argument("quarantine_id")
def quarantine_show(quarantine_id: str) -> None:
    """One quarantined delivery: why, when, and its body as received."""
    try:
        item = Quarantine(connect(_settings())).get(quarantine_id)
    except NotFoundError as exc:
        raise click.ClickException(exc.message) from None
    _echo_json({**item.summary(), "details": item.details, "content_type": item.content_type})
    click.echo("--- body ---")
    click.echo(item.body.decode("utf-8", errors="backslashreplace"))


@quarantine.command("replay")
@click.argument("quarantine_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="replay every quarantined delivery")
def quarantine_replay(quarantine_ids: tuple[str, ...], replay_all: bool) -> None:
    """Validate again and queue (through the same dedup as callbacks); kept if still invalid."""
    if not quarantine_ids and not replay_all:
        raise click.UsageError("name quarantine ids, or give --all")
    settings = _settings()
    connection = connect(settings)
    store = Quarantine(connection)
    deliveries = DeliveryQueue.from_settings(settings, connection)
    ids = store.ids(limit=1_000_000) if replay_all else list(quarantine_ids)
    failures = 0
    for quarantine_id in ids:
        try:
            item = store.get(quarantine_id)
            body = load_callback(item.body)
        except NotFoundError as exc:
            failures += 1
            click.echo(f"{quarantine_id}  not found: {exc.message}", err=True)
            continue
        except InvalidCallbackError as exc:
            failures += 1
            click.echo(f"{quarantine_id}  still invalid: {exc.message}: {json.dumps(exc.details)}", err=True)
            continue
        delivery = Delivery.from_body(body, mode=item.mode, source=REPLAY)
        queued = deliveries.accept(delivery)
        store.delete(quarantine_id)
        click.echo(f"{quarantine_id}  {'queued' if queued else 'duplicate'}  task {delivery.task_id}")
    if failures:
        sys.exit(1)


@quarantine.command("delete")
@click.argument("quarantine_ids", nargs=-1, required=True)
def quarantine_delete(quarantine_ids: tuple[str, ...]) -> None:
    """Forget quarantined deliveries for good."""
    store = Quarantine(connect(_settings()))
    for quarantine_id in quarantine_ids:
        try:
            store.delete(quarantine_id)
        except NotFoundError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"{quarantine_id}  deleted")


# --- failed jobs ---------------------------------------------------------------------------------


def _failed_registry(settings: Settings, connection: redis.Redis) -> FailedJobRegistry:
    queue = Queue(settings.queue_name, connection=connection, serializer=JSONSerializer)
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
        click.echo(f"{job.id}  {job.ended_at or ''}  {job.description}  | {failure_line(job)}")
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
        job = Job.fetch_many([job_id], connection=connection, serializer=JSONSerializer)[0]
        if job is None or job_id not in registry:
            missing += 1
            click.echo(f"{job_id}  not in the failed registry", err=True)
            continue
        tries = reset_retries(job)
        registry.requeue(job)
        click.echo(f"{job_id}  requeued ({tries} tries)")
    if missing:
        sys.exit(1)


# --- reconciliation ------------------------------------------------------------------------------


def _print_summary(summary: RunSummary) -> None:
    click.echo(
        f"window {summary.window_start} .. {summary.window_end}: seen {summary.seen}, "
        f"already had {summary.already_had}, queued {summary.queued}, quarantined {summary.quarantined}, "
        f"skipped {summary.skipped}, errors {len(summary.errors)}"
    )
    for task_id in summary.queued_task_ids:
        click.echo(f"  queued {task_id}")
    for error in summary.errors:
        click.echo(f"  error: {error}", err=True)
    if not summary.complete:
        click.echo("RECONCILIATION INCOMPLETE: the window was not fully checked", err=True)


def _parse_when(value: str, option: str) -> datetime:
    try:
        moment = parse_timestamp(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@cli.group("reconcile", invoke_without_command=True)
@click.option("--since", help="window start, ISO 8601 (default: now minus RECONCILE_WINDOW)")
@click.option("--until", help="window end, ISO 8601 (default: now)")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), help="window length back from --until")
@click.option("--schedule", is_flag=True, help="keep running every RECONCILE_INTERVAL seconds (the clock process)")
@click.pass_context
def reconcile_command(
    ctx: click.Context, since: str | None, until: str | None, hours: float | None, schedule: bool
) -> None:
    """Queue completed tasks whose callbacks never arrived (same validation and dedup as callbacks)."""
    if ctx.invoked_subcommand is not None:
        return
    if since and hours:
        raise click.UsageError("give --since or --hours, not both")
    configure_logging()
    settings = _settings()
    connection = connect(settings)
    try:
        reconciler = build_reconciler(settings, connection)
    except CallbackServerError as exc:
        raise click.ClickException(exc.message) from None
    try:
        _reconcile_loop(ctx, reconciler, settings, since, until, hours, schedule)
    finally:
        reconciler.close()


def _reconcile_loop(
    ctx: click.Context, reconciler: Reconciler, settings: Settings, since: str | None, until: str | None,
    hours: float | None, schedule: bool,
) -> None:
    while True:
        end = _parse_when(until, "--until") if until else datetime.now(UTC)
        if since:
            start = _parse_when(since, "--since")
        else:
            start = end - (timedelta(hours=hours) if hours else timedelta(seconds=settings.reconcile_window))
        if start >= end:
            raise click.BadParameter("the window is empty: --since must be before --until")
        try:
            summary = run_locked(reconciler, start, end, lock_ttl=max(settings.reconcile_interval, 300))
        except redis.RedisError as exc:
            if not schedule:
                raise click.ClickException(f"redis: {type(exc).__name__}: {exc}") from None
            # The clock keeps going: the next run covers the same window again.
            click.echo(f"RECONCILIATION SKIPPED: redis: {type(exc).__name__}", err=True)
            time.sleep(settings.reconcile_interval)
            continue
        if summary is None:
            click.echo("another reconciliation is running; skipped", err=True)
        else:
            _print_summary(summary)
        if not schedule:
            if summary is not None and not summary.complete:
                ctx.exit(1)
            return
        time.sleep(settings.reconcile_interval)


@reconcile_command.command("runs")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, RUNS_KEPT))
def reconcile_runs(limit: int) -> None:
    """Summaries of recent reconciliation runs, newest first."""
    for summary in RunLog(connect(_settings())).recent(limit):
        state = "complete" if summary.complete else "INCOMPLETE"
        click.echo(
            f"{summary.started_at}  {state:<10}  window {summary.window_start}..{summary.window_end}  "
            f"seen {summary.seen}  had {summary.already_had}  queued {summary.queued}  "
            f"quarantined {summary.quarantined}  errors {len(summary.errors)}"
        )
        for error in summary.errors:
            click.echo(f"    {error}")


def main() -> None:
    """Entry point of ``python -m callback_server``."""
    cli(prog_name="python -m callback_server")

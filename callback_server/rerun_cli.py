"""``python -m callback_server rerun``: the command line of :mod:`callback_server.rerun`.

Kept apart from ``cli.py`` so that the command's options, its progress bar and its questions sit
beside each other; the work itself is :class:`callback_server.rerun.Rerunner`'s.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TextIO

import click
import redis

from callback_server.connection import connect
from callback_server.exceptions import CallbackServerError, HandlerRegistrationError, RerunError
from callback_server.render import printable
from callback_server.rerun import (
    COMPLETE,
    CONFIRM_ABOVE,
    INTERRUPTED,
    Rerunner,
    Run,
    RunStore,
    Selection,
    build_rerunner,
    load_handlers,
    new_run,
    origin_here,
)
from callback_server.times import parse_instant, stamp

BAR_WIDTH = 30
"""Characters of the progress bar."""


class ProgressBar:
    """One line on a terminal, redrawn as a run goes: a bar when the API said how many, the counts always."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn = False

    def __call__(self, run: Run) -> None:
        """Redraw the line for the run's counts."""
        counts = f"listed {run.listed}, queued {run.queued}, skipped {run.skipped}"
        if run.total:
            done = min(run.listed / run.total, 1.0)
            filled = int(done * BAR_WIDTH)
            line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {run.listed}/{run.total}  {counts}"
        else:
            line = counts
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the line, so what follows starts on a new one."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _iso(value: str | None, option: str) -> str | None:
    """An ISO 8601 time as the list API takes it (UTC, milliseconds, Z); bad input names the option."""
    if value is None:
        return None
    moment = parse_instant(value)
    if moment is None:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint=option)
    return stamp(moment)


@click.command("rerun")
@click.argument("handlers", nargs=-1)
@click.option("--project", "projects", multiple=True, help="only tasks of this project (repeatable)")
@click.option("--type", "types", multiple=True, help="only tasks of this type (repeatable)")
@click.option("--event", "events", multiple=True, help="only tasks whose current state is this event (repeatable)")
@click.option("--updated-since", help="only tasks updated since this ISO 8601 time")
@click.option("--updated-until", help="only tasks updated before this ISO 8601 time (default: when the run starts)")
@click.option("--completed-since", help="only tasks completed since this ISO 8601 time")
@click.option("--completed-until", help="only tasks completed before this ISO 8601 time")
@click.option("--task", "task_ids", multiple=True, help="this task, fetched instead of listed (repeatable)")
@click.option("--dry-run", is_flag=True, help="say how many tasks would run, and which handlers; queue nothing")
@click.option("--yes", is_flag=True, help=f"do not ask before more than {CONFIRM_ABOVE:,} tasks")
@click.option("--resume", "resume_id", metavar="RUN_ID", help="go on with a run that stopped; no task is queued twice")
@click.pass_context
def rerun_command(
    ctx: click.Context,
    handlers: tuple[str, ...],
    projects: tuple[str, ...],
    types: tuple[str, ...],
    events: tuple[str, ...],
    updated_since: str | None,
    updated_until: str | None,
    completed_since: str | None,
    completed_until: str | None,
    task_ids: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    resume_id: str | None,
) -> None:
    """Run the named HANDLERs again over past tasks read from Scale's API, even where they ran before.

    HANDLER is a dotted name as the ledger shows it (myapp.scale_handlers.store_boxes). One job per
    task runs only the named handlers that ask for its type and event, with task.source "rerun"
    and the delivery id of the original delivery of that state. The last line is the summary.
    """
    from callback_server.cli import _settings  # the one place the environment is read

    selection_given = any(
        (projects, types, events, updated_since, updated_until, completed_since, completed_until, task_ids)
    )
    if resume_id is not None and (selection_given or dry_run):
        raise click.UsageError("--resume goes on with the run's own selection: give no selection or --dry-run with it")
    if resume_id is None and not handlers:
        raise click.UsageError("name at least one HANDLER (a dotted name, as the ledger shows it)")
    try:
        selection = Selection(
            projects=tuple(dict.fromkeys(projects)),
            types=tuple(dict.fromkeys(types)),
            events=tuple(dict.fromkeys(events)),
            updated_since=_iso(updated_since, "--updated-since"),
            updated_until=_iso(updated_until, "--updated-until"),
            completed_since=_iso(completed_since, "--completed-since"),
            completed_until=_iso(completed_until, "--completed-until"),
            task_ids=tuple(dict.fromkeys(task_ids)),
        )
    except RerunError as exc:
        raise click.UsageError(exc.message) from None
    settings = _settings()
    connection = connect(settings)
    store = RunStore(connection)
    try:
        if resume_id is not None:
            run = store.get(resume_id)
            if handlers and sorted(set(handlers)) != sorted(run.handlers):
                raise RerunError(f"rerun {run.run_id} runs {', '.join(run.handlers)}: name those, or none")
            if run.state == COMPLETE:
                raise RerunError(f"rerun {run.run_id} is complete: nothing to resume")
            run.resumed += 1
            names = run.handlers
        else:
            names = list(handlers)
        registrations = load_handlers(settings, names)
        rerunner = build_rerunner(settings, connection, registrations)
    except (RerunError, HandlerRegistrationError) as exc:
        raise click.ClickException(exc.message) from None
    except redis.RedisError as exc:
        raise click.ClickException(f"redis: {type(exc).__name__}: {exc}") from None
    try:
        if resume_id is None:
            user, origin = origin_here()
            try:
                run = new_run(names, selection, started_by=user, origin=origin, dry_run=dry_run)
            except RerunError as exc:  # a window that starts after now is empty
                raise click.UsageError(exc.message) from None
            if not dry_run and not yes and not _confirmed(rerunner, run):
                raise click.ClickException("nothing was queued")
        _execute(ctx, rerunner, run)
    finally:
        rerunner.api.close()


def _confirmed(rerunner: Rerunner, run: Run) -> bool:
    """On a terminal, ask before more than CONFIRM_ABOVE tasks (asking needs one small list call per query)."""
    if not sys.stdin.isatty():
        return True
    try:
        total = rerunner.count(run.selection)
    except CallbackServerError as exc:
        raise click.ClickException(exc.message) from None
    if total is not None and total <= CONFIRM_ABOVE:
        return True
    size = f"{total:,} tasks" if total is not None else "an unknown number of tasks (the API does not say)"
    return click.confirm(f"Run {', '.join(run.handlers)} again over {size}?", default=False)


def _execute(ctx: click.Context, rerunner: Rerunner, run: Run) -> None:
    """The run with a progress bar on a terminal, its errors and notes, then the summary line."""
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    progress: Callable[[Run], None] = bar if bar is not None else (lambda run: None)
    click.echo(f"rerun {run.run_id}: {', '.join(run.handlers)} over {printable(run.selection.describe())}", err=True)
    # SIGTERM (a dyno stopping, a kill) stops the run as Ctrl-C does, so it is recorded as interrupted.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        rerunner.execute(run, progress)
    except redis.RedisError as exc:
        if bar is not None:
            bar.close()
        click.echo(f"redis: {type(exc).__name__}: {printable(str(exc))}", err=True)
        if run.listed or run.queued:
            click.echo(
                f"RERUN INCOMPLETE: once Redis answers, python -m callback_server rerun --resume {run.run_id}", err=True
            )
        else:
            click.echo("nothing was queued: run the command again once Redis answers", err=True)
        ctx.exit(1)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo(f"interrupted: resume with  python -m callback_server rerun --resume {run.run_id}", err=True)
        click.echo(run.summary_line())
        ctx.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if bar is not None:
        bar.close()
    _report(run)
    if run.state != COMPLETE or run.errors:
        ctx.exit(1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _report(run: Run) -> None:
    for error in run.errors:
        click.echo(printable(f"error: {error}"), err=True)
    if run.dry_run:
        click.echo(f"dry run: would queue {run.queued} tasks; nothing was queued or stored")
        for name, count in sorted(run.by_handler.items()):
            click.echo(f"  {name}: {count} tasks")
        run.queued = 0
    else:
        for name, count in sorted(run.by_handler.items()):
            click.echo(f"  {name}: queued for {count} tasks")
        if run.already_queued:
            click.echo(f"  {run.already_queued} tasks were queued by this run before the resume, and not again")
    if run.state not in (COMPLETE, INTERRUPTED) and not run.dry_run:
        click.echo(f"RERUN INCOMPLETE: resume with  python -m callback_server rerun --resume {run.run_id}", err=True)
    click.echo(run.summary_line())

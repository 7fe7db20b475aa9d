"""What an operator can do from the console, and the audit log that records each action.

Each action is a function of (the app's state, the target ids) returning one line per target;
the views call them only on a confirmed POST carrying a valid CSRF token. Replays go through
the same code paths as the command line: a failed job gets all its retries back
(:func:`callback_server.jobs.reset_retries`), a quarantined body is validated again and
accepted through the same dedup as a callback.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from callback_server import defaults, jobs, rerun
from callback_server.accept import NOT_FOUND
from callback_server.exceptions import CallbackServerError, NotFoundError
from callback_server.fetch import MAX_TASK_ID, TASK_ID, build_api, fetch_tasks
from callback_server.jobs import NOT_FAILED
from callback_server.ledger import Ledger
from callback_server.reconcile_request import COOLDOWN, RunRequests
from callback_server.times import stamp
from callback_server.web.state import ReceiverState

log = logging.getLogger(__name__)

AUDIT_KEY = "scb:dashboard:audit"
"""Redis list of the console's actions, newest first."""

AUDIT_KEPT = 1000
"""Entries the audit log keeps (older ones are dropped)."""

FETCH_TIMEOUT = 8.0
"""Seconds the console waits for Scale's API when fetching a task (gunicorn's timeout is 20 s)."""

ACTION_DEADLINE = 10.0
"""Seconds after which an action begins no further target: with one fetch's timeout, within gunicorn's 20 s."""

TARGET_CHARS = 300
"""Longest target text kept in the audit log and its log line."""


@dataclass(frozen=True)
class Outcome:
    """What one action did to one target."""

    target: str
    result: str
    ok: bool = True


def _queue(state: ReceiverState) -> Queue:
    return Queue(state.settings.callback_queue, connection=state.connection, serializer=JSONSerializer)


def _fetch(state: ReceiverState, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=state.connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def replay_failed(state: ReceiverState, job_id: str) -> Outcome:
    """A failed job back on the queue with all its retries (handlers that completed are skipped)."""
    tries = jobs.replay_failed(FailedJobRegistry(queue=_queue(state)), job_id)
    if tries is None:
        return Outcome(job_id, NOT_FAILED, ok=False)
    return Outcome(job_id, f"requeued ({tries} tries)")


def delete_failed(state: ReceiverState, job_id: str) -> Outcome:
    """A failed job deleted for good (the ledger keeps its history)."""
    registry = FailedJobRegistry(queue=_queue(state))
    if job_id not in registry:
        return Outcome(job_id, NOT_FAILED, ok=False)
    registry.remove(job_id, delete_job=True)
    return Outcome(job_id, "deleted")


def retry_now(state: ReceiverState, job_id: str) -> Outcome:
    """A job waiting for its next try put on the queue now (it keeps its remaining retries)."""
    if not jobs.retry_now(state.connection, state.settings.callback_queue, job_id):
        return Outcome(job_id, "not waiting to retry", ok=False)
    return Outcome(job_id, "queued now")


def replay_quarantined(state: ReceiverState, quarantine_id: str) -> Outcome:
    """Validate a kept body again and accept it (same dedup as callbacks); kept if still invalid."""
    done = state.accept.replay(quarantine_id)
    if done.accepted:
        return Outcome(quarantine_id, f"{done.outcome}: task {done.task_id}, delivery {done.delivery_id}")
    if done.outcome == NOT_FOUND:
        return Outcome(quarantine_id, NOT_FOUND, ok=False)
    return Outcome(quarantine_id, f"{done.replay_outcome}: {done.reason}"[:TARGET_CHARS], ok=False)


def delete_quarantined(state: ReceiverState, quarantine_id: str) -> Outcome:
    """A quarantined body forgotten for good."""
    try:
        state.quarantine.delete(quarantine_id)
    except NotFoundError:
        return Outcome(quarantine_id, "not found", ok=False)
    return Outcome(quarantine_id, "deleted")


def delete_unhandled(state: ReceiverState, raw_note: str) -> Outcome:
    """An unhandled-delivery note dismissed (the delivery itself stays in the ledger)."""
    try:
        note = json.loads(raw_note)
        label = f"{note.get('type')} {note.get('event') or 'completed'} task {note.get('task_id')}"
    except (ValueError, AttributeError):
        label = raw_note
    removed = state.connection.lrem(defaults.UNHANDLED_KEY, 1, raw_note)
    return Outcome(label, "dismissed" if removed else "not found", ok=bool(removed))


def request_reconciliation(state: ReceiverState, _: str) -> Outcome:
    """Ask the clock process for a reconciliation run now (it never runs inside the request)."""
    requests = RunRequests(state.connection)
    if requests.request(by="dashboard"):
        return Outcome("reconciliation", "requested: the clock process starts it within seconds")
    if requests.pending():
        return Outcome("reconciliation", "already requested and not started yet", ok=False)
    return Outcome(
        "reconciliation",
        f"one was asked for less than {COOLDOWN // 60} min ago: ask again in {requests.cooldown_left()} s",
        ok=False,
    )


def fetch_from_scale(state: ReceiverState, task_id: str) -> Outcome:
    """Ask Scale's API for a task the ledger never saw and offer it to the accept path (source ``fetch``).

    One GET of one task, with a short timeout and no retries, so the request stays well within
    the web timeout; the accept path's dedup makes a second fetch harmless.
    """
    try:
        api = build_api(state.settings, retries=0, timeout=FETCH_TIMEOUT)
    except CallbackServerError as exc:
        return Outcome(task_id, exc.message, ok=False)
    try:
        result = fetch_tasks(state.settings, state.connection, [task_id], api=api)[0]
    finally:
        api.close()
    return Outcome(task_id, result.line(), ok=not result.failed)


@dataclass(frozen=True)
class Actor:
    """Who acted: the console's user, the peer that sent the request, and the client chain Heroku's router adds."""

    user: str
    remote_addr: str
    forwarded_for: str = ""


HANDLER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_<>]*)+$")
"""A handler's dotted name, as the ledger shows it."""


def start_rerun(
    state: ReceiverState, task_ids: list[str], form: Mapping[str, list[str]], actor: Actor
) -> list[Outcome]:
    """One rerun of the named handlers over the tasks: recorded, and handed to a worker (which has the handlers).

    The names are checked against those the workers registered (the web tier imports no handler
    code); the worker checks them again against its own registry before it queues anything.
    """
    names = list(dict.fromkeys(n.strip() for n in form.get("handlers", []) if n.strip()))
    if state.settings.scale_api_key is None:
        return [Outcome("rerun", "SCALE_API_KEY is not set: a rerun fetches each task from Scale's API", ok=False)]
    if not names:
        return [Outcome("rerun", "no handler was chosen: tick the handlers to run again", ok=False)]
    known = set(Ledger(state.connection, state.settings.ledger_ttl).handler_names().values())
    unknown = [n for n in names if not HANDLER_NAME.match(n) or n not in known]
    if unknown:
        shown = ", ".join(n[:TARGET_CHARS] for n in unknown)
        return [Outcome("rerun", f"unknown handler {shown}: no worker registered it", ok=False)]
    bad = [t for t in task_ids if not TASK_ID.fullmatch(t) or len(t) > MAX_TASK_ID]
    if bad:
        return [Outcome(t[:TARGET_CHARS], "not a task id: nothing was started", ok=False) for t in bad]
    origin = f"console from {actor.remote_addr or '?'}" + (f" ({actor.forwarded_for})" if actor.forwarded_for else "")
    run = rerun.request_run(
        state.connection, state.settings, names, task_ids, started_by=actor.user, origin=origin[:TARGET_CHARS]
    )
    return [
        Outcome(
            f"rerun {run.run_id}",
            f"started for {len(run.selection.task_ids)} tasks, handlers {', '.join(names)}: a worker fetches each "
            "task and queues it; follow it on the Reruns page",
        )
    ]


@dataclass(frozen=True)
class Action:
    """An action the console offers: what it is called, what it does, what it acts on.

    ``run`` acts on one target at a time; an action whose targets make one thing together (a rerun
    of many tasks) has ``run_all`` instead (and no ``run``), and ``carries`` names the form fields
    it also reads.
    """

    name: str
    title: str
    explains: str
    target: str
    run: Callable[[ReceiverState, str], Outcome] | None
    carries: tuple[str, ...] = ()
    run_all: Callable[[ReceiverState, list[str], Mapping[str, list[str]], Actor], list[Outcome]] | None = None


ACTIONS = {
    a.name: a
    for a in (
        Action(
            "failed-replay",
            "Replay failed jobs",
            "Puts each job back on the queue with all its retries; handlers that completed are skipped.",
            "failed",
            replay_failed,
        ),
        Action(
            "failed-delete",
            "Delete failed jobs",
            "Deletes each job and its body for good; the ledger keeps what happened.",
            "failed",
            delete_failed,
        ),
        Action(
            "retry-now", "Retry now", "Puts each job waiting for its next try on the queue now.", "scheduled", retry_now
        ),
        Action(
            "quarantine-replay",
            "Replay quarantined bodies",
            "Validates each body again and queues it through the callback dedup; an invalid one stays.",
            "quarantine",
            replay_quarantined,
        ),
        Action(
            "quarantine-delete",
            "Delete quarantined bodies",
            "Forgets each body for good.",
            "quarantine",
            delete_quarantined,
        ),
        Action(
            "unhandled-delete",
            "Dismiss unhandled notes",
            "Removes each note from the unhandled list; the ledger keeps the delivery.",
            "unhandled",
            delete_unhandled,
        ),
        Action(
            "fetch",
            "Fetch from Scale",
            "Asks Scale's API for each task and queues its current state through the callback path (same "
            "validation and dedup); nothing is queued twice.",
            "task",
            fetch_from_scale,
        ),
        Action(
            "rerun",
            "Rerun handlers",
            "Runs the chosen handlers again over each task, even where they ran before (only they, and only "
            "where they ask for the task's type and event), with the original delivery id. A worker fetches each "
            "task's current state from Scale's API and queues it; the Reruns page follows the run.",
            "task",
            None,
            carries=("handlers",),
            run_all=start_rerun,
        ),
        Action(
            "reconcile-run",
            "Run reconciliation now",
            "Asks the clock process to run a scheduled reconciliation at once; its result shows on the "
            "reconciliation page.",
            "none",
            request_reconciliation,
        ),
    )
}
"""Every action, by the name its form posts to."""


def run(
    state: ReceiverState, action: Action, targets: list[str], *, deadline: float = ACTION_DEADLINE
) -> list[Outcome]:
    """The action on each target in turn; an unexpected error is that target's outcome and never stops the others.

    Targets not begun within ``deadline`` seconds are reported as not reached (a fetch of 1,000
    tasks would outlast the request), so the operator sees which to act on again.
    """
    assert action.run is not None, f"{action.name} acts on its targets together (run_together)"
    outcomes: list[Outcome] = []
    ends = time.monotonic() + deadline
    for target in targets:
        if outcomes and time.monotonic() > ends:
            outcomes.append(
                Outcome(target, f"not reached: the action stops after {deadline:.0f} s; run it again", ok=False)
            )
            continue
        try:
            outcomes.append(action.run(state, target))
        except Exception as exc:  # recorded as the target's outcome, its traceback logged
            log.exception("dashboard action %s failed on one target", action.name, extra={"outcome": "error"})
            outcomes.append(Outcome(target, f"error: {type(exc).__name__}: {exc}"[:TARGET_CHARS], ok=False))
    return outcomes


def run_together(
    state: ReceiverState, action: Action, targets: list[str], carried: dict[str, list[str]], actor: Actor
) -> list[Outcome]:
    """An action that takes all its targets at once (a rerun); an unexpected error is every target's
    outcome, so the operator sees it and the audit log records it, never a 500."""
    assert action.run_all is not None
    try:
        return action.run_all(state, targets, carried, actor)
    except Exception as exc:  # recorded for each target, its traceback logged
        log.exception("dashboard action %s failed", action.name, extra={"outcome": "error"})
        error = f"error: {type(exc).__name__}: {exc}"[:TARGET_CHARS]
        return [Outcome(target, error, ok=False) for target in targets] or [Outcome("-", error, ok=False)]


def audit(connection: redis.Redis, action: str, outcomes: list[Outcome], actor: Actor) -> dict[str, Any]:
    """Write one audit entry (Redis, capped, and a log line): every target's outcome, each a field of its own.

    Fields, not joined text, so that a target's text (a task id a sender chose) cannot pose as
    another target or another outcome. The log line is written even when Redis refuses the entry.
    """
    failed = sum(1 for o in outcomes if not o.ok)
    entry = {
        "at": stamp(),
        "action": action,
        "ok": failed == 0,
        "count": len(outcomes),
        "failed": failed,
        "outcomes": [
            {"target": o.target[:TARGET_CHARS], "result": o.result[:TARGET_CHARS], "ok": o.ok} for o in outcomes
        ],
        "user": actor.user,
        "client": actor.remote_addr,
        "forwarded_for": actor.forwarded_for[:TARGET_CHARS],
    }
    log.info(
        "dashboard action %s: %d ok, %d failed",
        action,
        len(outcomes) - failed,
        failed,
        extra={"outcome": "ok" if failed == 0 else "failed", "count": len(outcomes)},
    )
    pipe = connection.pipeline(transaction=True)
    pipe.lpush(AUDIT_KEY, json.dumps(entry))
    pipe.ltrim(AUDIT_KEY, 0, AUDIT_KEPT - 1)
    try:
        pipe.execute()
    except redis.RedisError as exc:
        log.error("dashboard audit entry not stored: %s", type(exc).__name__, extra={"outcome": "unstored"})
        entry["unstored"] = True
    return entry


def audit_log(connection: redis.Redis, limit: int = 200) -> list[dict[str, Any]]:
    """The newest audit entries first."""
    return [json.loads(raw) for raw in connection.lrange(AUDIT_KEY, 0, max(limit, 1) - 1)]

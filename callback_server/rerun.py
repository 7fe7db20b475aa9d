"""Re-run chosen handlers over past tasks, read from Scale's API (``python -m callback_server rerun``).

A handler fixed after a bug, or a new one, has to run over tasks whose deliveries are long done:
``fetch`` and the reconciler say "already had", and the effects record skips it. A rerun lists
the selected tasks through the reconciler's client (paged, with its backoff and ``Retry-After``),
turns each into the callback body of its current state (same event, validation and delivery
identity as a callback), and queues one job per task that runs **only the named handlers** that
ask for the task's type and event, even if they completed before.

A rerun job is a job of the callback queue like any other (same retries, failed registry, ledger
and counters), with three differences: its id is its own (``rerun-<run>-<delivery>``), so it never
touches the delivery's identity or its job; its payload carries the original ``delivery_id`` (the
handler's idempotency key holds) with ``source`` ``rerun`` and the handler names; and its
effects record is its own, so its retries skip what it already ran.

A run keeps its marks in Redis (which task it queued, under which delivery): ``--resume RUN_ID``
after a Ctrl-C, a kill or an API outage lists the same selection again and queues no task twice.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import product
from typing import Any

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from callback_server import defaults, ledger, scripts, stats
from callback_server.accept import callback_body, task_mode
from callback_server.config import Settings
from callback_server.deliveries import Delivery, DeliveryQueue, describe
from callback_server.events import EVENTS, Event, UnknownStatusError, derive_event
from callback_server.exceptions import CallbackServerError, RerunError
from callback_server.render import printable, shorten
from callback_server.scale_api import ScaleAPI, ScaleAPIError
from callback_server.schemas import validate_callback
from callback_server.times import parse_instant, stamp

log = logging.getLogger(__name__)

RERUN = "rerun"
"""The ``source`` of a rerun job's task (``task.source``); the ledger writes it as ``u``."""

PREFIX = "scb:rerun"
"""Key prefix of every rerun key."""

RERUNS_KEY = f"{PREFIX}:runs"
"""Sorted set of run ids by start time (Unix seconds), for the console's Reruns page."""

RERUNS_KEPT = 200
"""Runs the index keeps; older ones are dropped with their marks."""

RUN_TTL = 30 * 24 * 3600
"""Seconds a run's record and marks are kept after it last moved: as long as a failed job can be replayed."""

CONFIRM_ABOVE = 1000
"""A run of more tasks than this asks first on a terminal (``--yes`` skips the question)."""

PLANNER_FUNCTION = "callback_server.rerun.run_requested"
"""What a worker runs for a rerun started from the console (it has the handlers imported)."""

PLANNER_TIMEOUT = 3600
"""Seconds a worker may spend listing and queueing a console-started run (one fetch per task)."""

JOB_PREFIX = "rerun"
"""Rerun job ids start with this: ``rerun-<run id>-<delivery id>`` (RQ's id characters only)."""

RUN_ID = re.compile(r"^[0-9a-f]{12}$")
"""What a run id looks like (12 hex characters)."""

PROGRESS_EVERY = 50
"""Tasks between two writes of a run's progress to Redis (the console reads it)."""

RUNNING, COMPLETE, INCOMPLETE, INTERRUPTED, REQUESTED = "running", "complete", "incomplete", "interrupted", "requested"
"""A run's states: being listed, done, stopped by an error (resumable), stopped by a signal (resumable),
asked for from the console and not yet picked up by a worker."""

SKIP_REASON = "no named handler asks for its type and event"
"""Why a listed task is skipped (the summary line says so)."""


def run_key(run_id: str) -> str:
    """The hash of one run: its record (JSON) and its progress counters."""
    return f"{PREFIX}:run:{run_id}"


def marks_key(run_id: str) -> str:
    """The hash of one run's marks: task id -> delivery id of every task it queued."""
    return f"{PREFIX}:marks:{run_id}"


def rerun_job_id(run_id: str, delivery_id: str) -> str:
    """A rerun job's id: never a delivery id, so the delivery's own job and identity are left alone."""
    return f"{JOB_PREFIX}-{run_id}-{delivery_id}"


def counter_field(outcome: str) -> str:
    """The stats field of a task a rerun looked at (``queued`` or ``skipped``)."""
    return stats.field("rerun_task", outcome)


@dataclass(frozen=True)
class Selection:
    """Which tasks a run covers: the list API's filters, or task ids fetched one by one."""

    projects: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    updated_since: str | None = None
    updated_until: str | None = None
    completed_since: str | None = None
    completed_until: str | None = None
    task_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.events) - set(EVENTS))
        if unknown:
            raise RerunError(f"unknown event {', '.join(unknown)}: events are {', '.join(EVENTS)}")
        if self.task_ids and (
            self.projects
            or self.types
            or self.updated_since
            or self.updated_until
            or self.completed_since
            or self.completed_until
        ):
            raise RerunError("--task names the tasks: give no --project, --type or time window with it")
        for since, until, name in (
            (self.updated_since, self.updated_until, "updated"),
            (self.completed_since, self.completed_until, "completed"),
        ):
            if since and until and since >= until:
                raise RerunError(f"the {name} window is empty: --{name}-since must be before --{name}-until")

    def queries(self) -> list[dict[str, str]]:
        """The list API queries that cover the selection: one per project and type (all when none)."""
        window: dict[str, str] = {}
        for value, name in (
            (self.updated_since, "updated_after"),
            (self.updated_until, "updated_before"),
            (self.completed_since, "completed_after"),
            (self.completed_until, "completed_before"),
        ):
            if value:
                window[name] = value
        queries = []
        for project, task_type in product(self.projects or (None,), self.types or (None,)):
            query = dict(window)
            if project is not None:
                query["project"] = project
            if task_type is not None:
                query["type"] = task_type
            queries.append(query)
        return queries

    def describe(self) -> str:
        """The selection in a line, as an operator would have typed it."""
        if self.task_ids:
            shown = ", ".join(self.task_ids[:5]) + (
                f" and {len(self.task_ids) - 5} more" if len(self.task_ids) > 5 else ""
            )
            return f"tasks {shown}"
        parts = []
        for label, values in (("projects", self.projects), ("types", self.types), ("events", self.events)):
            if values:
                parts.append(f"{label} {', '.join(values)}")
        for label, since, until in (
            ("updated", self.updated_since, self.updated_until),
            ("completed", self.completed_since, self.completed_until),
        ):
            if since or until:
                parts.append(f"{label} {since or '...'} .. {until or 'now'}")
        return "; ".join(parts) or "every task of the account"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        """A stored selection (lists back to tuples)."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


@dataclass
class Run:
    """One rerun: who started it from where, what it covers, and how far it got."""

    run_id: str
    handlers: list[str]
    selection: Selection
    started_by: str
    origin: str
    started_at: str
    state: str = RUNNING
    finished_at: str = ""
    listed: int = 0
    queued: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    resumed: int = 0
    """How many times it was resumed."""
    already_queued: int = 0
    """Tasks of this pass that an earlier pass of the run had queued (not queued again)."""
    total: int | None = None
    """How many tasks the API said the selection holds, when it said so."""
    by_handler: dict[str, int] = field(default_factory=dict)
    """Tasks queued (or, in a dry run, to be queued) for each handler."""
    dry_run: bool = False

    def summary_line(self) -> str:
        """The last line a run prints (its counts for the whole run: queued includes earlier passes)."""
        return (
            f"rerun {self.run_id}: listed {self.listed}, queued {self.queued}, skipped {self.skipped} ({SKIP_REASON})"
        )

    def record(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["selection"] = asdict(self.selection)
        data["errors"] = self.errors[-20:]
        return data

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Run:
        """A stored run; fields added or dropped since it was written are tolerated."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["selection"] = Selection.from_dict(values.get("selection") or {})
        return cls(**values)


class RunStore:
    """Runs and their marks in Redis: the record, progress the console reads, the tasks each queued."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def save(self, run: Run) -> None:
        """Write a run's record (and keep it, its marks and the index for RUN_TTL from now)."""
        pipe = self.connection.pipeline(transaction=True)
        pipe.hset(run_key(run.run_id), "record", json.dumps(run.record()))
        pipe.expire(run_key(run.run_id), RUN_TTL)
        pipe.expire(marks_key(run.run_id), RUN_TTL)
        pipe.zadd(RERUNS_KEY, {run.run_id: _seconds(run.started_at)}, nx=True)
        pipe.expire(RERUNS_KEY, RUN_TTL)
        pipe.execute()
        self._trim()

    def _trim(self) -> None:
        extra = self.connection.zcard(RERUNS_KEY) - RERUNS_KEPT
        if extra > 0:
            old = [raw.decode() for raw in self.connection.zrange(RERUNS_KEY, 0, extra - 1)]
            pipe = self.connection.pipeline(transaction=True)
            pipe.zrem(RERUNS_KEY, *old)
            for run_id in old:
                pipe.delete(run_key(run_id), marks_key(run_id))
            pipe.execute()

    def get(self, run_id: str) -> Run:
        """A run by id; :class:`RerunError` when there is none (or it is older than RUN_TTL)."""
        if not RUN_ID.match(run_id):
            raise RerunError(f"not a rerun id: {printable(run_id)[:40]!r} (12 hex characters, as a run prints it)")
        raw = self.connection.hget(run_key(run_id), "record")
        if raw is None:
            raise RerunError(f"no rerun {run_id}: runs are kept {RUN_TTL // 86400} days")
        return Run.from_record(json.loads(raw))

    def queued(self, run_id: str) -> int:
        """How many tasks the run has queued, all passes together (its marks)."""
        return int(self.connection.hlen(marks_key(run_id)))

    def marks(self, run_id: str, limit: int = 50) -> list[tuple[str, str]]:
        """Up to ``limit`` of the run's (task id, delivery id) marks."""
        found: list[tuple[str, str]] = []
        for task_id, delivery_id in self.connection.hscan_iter(marks_key(run_id), count=limit):
            found.append((task_id.decode("utf-8", "replace"), delivery_id.decode()))
            if len(found) >= limit:
                break
        return found

    def recent(self, limit: int = 50) -> list[Run]:
        """The newest runs first, with their live queued counts."""
        ids = [raw.decode() for raw in self.connection.zrevrange(RERUNS_KEY, 0, max(limit, 1) - 1)]
        pipe = self.connection.pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(run_key(run_id), "record")
            pipe.hlen(marks_key(run_id))
        replies = pipe.execute() if ids else []
        runs = []
        for raw, queued in zip(replies[::2], replies[1::2], strict=True):
            if raw is None:
                continue
            run = Run.from_record(json.loads(raw))
            run.queued = int(queued)
            runs.append(run)
        return runs


def named_handlers(names: Iterable[str], registrations: Mapping[str, list[Any]]) -> list[Any]:
    """The registrations of the named handlers (every type each serves); :class:`RerunError` names unknown ones.

    ``registrations`` is the registry's snapshot (type -> registrations). The fallback that records
    unhandled deliveries is no handler of anyone's, so it cannot be named.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise RerunError("name at least one handler")
    found = [r for regs in registrations.values() for r in regs if r.name in wanted]
    known = sorted({r.name for regs in registrations.values() for r in regs})
    unknown = [name for name in wanted if name not in {r.name for r in found}]
    if unknown:
        listing = "\n  ".join(known) if known else "(none: is CALLBACK_HANDLERS set?)"
        raise RerunError(
            f"unknown handler {', '.join(printable(n) for n in unknown)}; the handlers CALLBACK_HANDLERS "
            f"registers are:\n  {listing}"
        )
    return found


def load_handlers(settings: Settings, names: Iterable[str]) -> list[Any]:
    """Import CALLBACK_HANDLERS (as a worker does) and return the named handlers' registrations."""
    # Imported here: the rest of this module (and the console) must not load handler code.
    from workers.registry import import_handler_modules, registry

    import_handler_modules(settings.callback_handlers)
    return named_handlers(names, registry.snapshot())


def origin_here() -> tuple[str, str]:
    """Who runs this command and from where: the user, and the host (the dyno's name on Heroku)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    where = os.environ.get("DYNO") or socket.gethostname()
    return user, f"command line on {where}"


def new_run(handlers: list[str], selection: Selection, *, started_by: str, origin: str, dry_run: bool = False) -> Run:
    """A run not started yet. Without an end to its update window the window ends now, so a resume
    lists the same tasks: one updated since has a new state, and a run of its own."""
    started = stamp()
    if not selection.task_ids and not selection.updated_until:
        selection = replace(selection, updated_until=started)
    return Run(
        run_id=uuid.uuid4().hex[:12],
        handlers=list(dict.fromkeys(handlers)),
        selection=selection,
        started_by=started_by,
        origin=origin,
        started_at=started,
        dry_run=dry_run,
    )


class Rerunner:
    """Lists a run's tasks and queues one rerun job per task some named handler asks for."""

    def __init__(
        self,
        api: ScaleAPI,
        deliveries: DeliveryQueue,
        handlers: list[Any],
        *,
        ledger_ttl: int = defaults.LEDGER_TTL,
    ) -> None:
        self.api = api
        self.deliveries = deliveries
        self.connection = deliveries.connection
        self.handlers = handlers
        self.ledger_ttl = ledger_ttl
        self.store = RunStore(self.connection)
        self._enqueue = self.connection.register_script(scripts.RERUN_ENQUEUE)

    def count(self, selection: Selection) -> int | None:
        """How many tasks the selection holds, as the API's ``total`` says (None when it does not say)."""
        if selection.task_ids:
            return len(selection.task_ids)
        total = 0
        for query in selection.queries():
            page = self.api.list_page({**query, "limit": 1})
            value = page.get("total")
            if not isinstance(value, int):
                return None
            total += value
        return total

    def tasks(self, selection: Selection, run: Run) -> Iterator[Any]:
        """The selection's tasks, one at a time: listed page by page (never all held at once), or fetched."""
        if selection.task_ids:
            run.total = len(selection.task_ids)
            for task_id in selection.task_ids:
                try:
                    yield self.api.get_task(task_id)
                except ScaleAPIError as exc:
                    if exc.status != 404:
                        raise
                    run.errors.append(f"task {task_id}: Scale's API has no such task for this key")
            return
        totals: list[int] = []

        def on_page(page: Mapping[str, Any]) -> None:
            if not totals and isinstance(page.get("total"), int):
                totals.append(page["total"])
                run.total = (run.total or 0) + page["total"]

        for query in selection.queries():
            totals.clear()
            yield from self.api.list_tasks(query, on_page=on_page)

    def execute(self, run: Run, progress: Callable[[Run], None] = lambda run: None) -> Run:
        """List the run's tasks and queue each once (its marks say what an earlier pass queued).

        Ends ``complete``, or ``incomplete`` with the error when the API or Redis gives out, or
        ``interrupted`` on Ctrl-C (re-raised); a resume goes on from the marks. A dry run writes nothing.
        """
        run.state = RUNNING
        run.listed = run.skipped = run.already_queued = 0
        run.total = None
        run.by_handler = {}
        run.errors = []
        if not run.dry_run:
            run.queued = self.store.queued(run.run_id)
            self.store.save(run)
        events = set(run.selection.events)
        try:
            for count, task in enumerate(self.tasks(run.selection, run), 1):
                self._one(run, task, events)
                if count % PROGRESS_EVERY == 0:
                    progress(run)
                    if not run.dry_run:
                        self.store.save(run)
        except KeyboardInterrupt:
            self._finish(run, INTERRUPTED)
            raise
        except ScaleAPIError as exc:
            run.errors.append(exc.message)
            self._finish(run, INCOMPLETE)
        except redis.RedisError as exc:
            run.errors.append(f"redis: {type(exc).__name__}: {exc}")
            self._finish(run, INCOMPLETE)
        else:
            self._finish(run, COMPLETE)
        progress(run)
        return run

    def _finish(self, run: Run, state: str) -> None:
        run.state = state
        run.finished_at = stamp()
        if run.dry_run:
            return
        try:
            run.queued = self.store.queued(run.run_id)
            self.store.save(run)
        except redis.RedisError as exc:
            run.errors.append(f"could not keep the run's progress: {type(exc).__name__}")
        log.info(
            "rerun %s",
            state,
            extra={"run_id": run.run_id, "count": run.queued, "outcome": state},
        )

    def _one(self, run: Run, task: Any, events: set[str]) -> None:
        """One task of the selection: skipped, counted, or queued once for the handlers that ask for it."""
        if not isinstance(task, dict):
            run.errors.append("the API listed something that is not a task object")
            return
        task_id = shorten(task.get("task_id"), 80)
        event: Event | None = None  # None: no event has happened yet, nothing any handler could have run for
        if task.get("status") != "pending" or task.get("completed_at"):
            try:
                event = derive_event(task)
            except (UnknownStatusError, TypeError, ValueError, AttributeError) as exc:
                run.listed += 1
                run.errors.append(f"task {task_id}: {shorten(exc, 200)}")
                return
        if events and (event is None or event.name not in events):
            return
        run.listed += 1
        wanted = [] if event is None else list(dict.fromkeys(r.name for r in self.handlers if _asks(r, task, event)))
        if not wanted:
            run.skipped += 1
            return
        body = callback_body(task)
        problems = validate_callback(body)
        if problems:
            run.errors.append(f"task {task_id}: not a valid callback: {shorten(json.dumps(problems), 200)}")
            return
        delivery = Delivery.from_body(body, mode=task_mode(task), source=RERUN, event=event)
        if run.dry_run:
            for name in wanted:
                run.by_handler[name] = run.by_handler.get(name, 0) + 1
            run.queued += 1
            return
        if self.enqueue(run.run_id, delivery, wanted):
            run.queued += 1
            for name in wanted:
                run.by_handler[name] = run.by_handler.get(name, 0) + 1
        else:
            run.already_queued += 1

    def job(self, run_id: str, delivery: Delivery, handlers: list[str]) -> Job:
        """The rerun job of a delivery, as RQ would write it: the delivery's own id inside, a job id of its own."""
        argument = {**delivery.as_job_arg(), "rerun": {"run_id": run_id, "handlers": handlers}}
        return self.deliveries.build_job(
            delivery,
            argument=argument,
            job_id=rerun_job_id(run_id, delivery.delivery_id),
            description=f"{describe(delivery)} run {run_id}",
        )

    def enqueue(self, run_id: str, delivery: Delivery, handlers: list[str]) -> bool:
        """Queue the delivery's rerun job unless this run queued its task before: one script call."""
        job = self.job(run_id, delivery, handlers)
        mapping = job.to_dict()
        flat: list[Any] = []
        for name, value in mapping.items():
            flat += [name, value.value if isinstance(value, JobStatus) else value]
        now = time.time()
        period = int(now // ledger.PERIOD)
        keys, args = scripts.rerun_enqueue_call(
            marks=marks_key(run_id),
            job=job.key,
            queue=self.deliveries.queue.key,
            queues=Queue.redis_queues_keys,
            stream=ledger.stream_key(period),
            index=ledger.index_key(period),
            counters=stats.TOTAL_KEY,
            task_id=delivery.task_id,
            job_id=job.id,
            identity=ledger.raw_id(delivery.delivery_id),
            delivery_id=delivery.delivery_id,
            ledger_expiry=ledger.stream_expiry(period, self.ledger_ttl),
            type_code=ledger.type_code(delivery.task_type),
            event_code=ledger.event_code(delivery.event),
            source_code=ledger.SOURCES[RERUN],
            mode_code=ledger.MODES.get(delivery.mode, delivery.mode),
            counter_field=counter_field("queued"),
            marks_ttl=RUN_TTL,
            job_fields=flat,
        )
        return bool(self._enqueue(keys=keys, args=args))


def _asks(registration: Any, task: Mapping[str, Any], event: Event) -> bool:
    """Whether a handler's registration asks for this task's type and event (the worker's own rule)."""
    from workers.registry import asks

    return asks(registration, str(task.get("type")), event)


def build_rerunner(settings: Settings, connection: redis.Redis, handlers: list[Any], **api_options: Any) -> Rerunner:
    """A rerunner on SCALE_API_URL / SCALE_API_KEY and the callback queue as configured."""
    if settings.scale_api_key is None:
        raise RerunError("SCALE_API_KEY is not set: a rerun lists the tasks from Scale's API")
    api = ScaleAPI(settings.scale_api_url, settings.scale_api_key, **api_options)
    return Rerunner(api, DeliveryQueue.from_settings(settings, connection), handlers, ledger_ttl=settings.ledger_ttl)


def request_run(
    connection: redis.Redis,
    settings: Settings,
    handlers: list[str],
    task_ids: list[str],
    *,
    started_by: str,
    origin: str,
) -> Run:
    """A rerun of ``task_ids`` asked for from the console: recorded, and a planner job queued for a worker.

    The web tier imports no handler code, so a worker (which has CALLBACK_HANDLERS imported) checks
    the names, fetches each task and queues the rerun jobs; the console follows it on the Reruns page.
    """
    run = new_run(handlers, Selection(task_ids=tuple(dict.fromkeys(task_ids))), started_by=started_by, origin=origin)
    run.state = REQUESTED
    RunStore(connection).save(run)
    queue = Queue(settings.callback_queue, connection=connection, serializer=JSONSerializer)
    queue.enqueue(
        PLANNER_FUNCTION,
        run.run_id,
        job_id=f"{JOB_PREFIX}-plan-{run.run_id}",
        description=f"rerun {run.run_id}: list and queue {len(task_ids)} tasks",
        job_timeout=PLANNER_TIMEOUT,
        result_ttl=defaults.RESULT_TTL,
        failure_ttl=defaults.FAILURE_TTL,
    )
    return run


def run_requested(run_id: str) -> dict[str, Any]:
    """The planner job of a console-started run, in a worker: check the names, list, queue (resumable)."""
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        raise RuntimeError("run_requested runs inside an RQ job")
    settings = Settings.from_env(os.environ)
    store = RunStore(job.connection)
    run = store.get(run_id)
    try:
        handlers = load_handlers(settings, run.handlers)
        rerunner = build_rerunner(settings, job.connection, handlers)
    except CallbackServerError as exc:  # an unknown name, a module that does not import, no API key
        run.state = INCOMPLETE
        run.errors = [exc.message]
        run.finished_at = stamp()
        store.save(run)
        raise
    try:
        rerunner.execute(run)
    finally:
        rerunner.api.close()
    if run.state != COMPLETE:
        raise RerunError(f"rerun {run_id} {run.state}: {'; '.join(run.errors)[:500]}")
    return {"listed": run.listed, "queued": run.queued, "skipped": run.skipped}


def _seconds(text: str) -> float:
    moment = parse_instant(text)
    return moment.timestamp() if moment is not None else time.time()

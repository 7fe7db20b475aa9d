"""The soak of hardening issue 12: nothing is lost while every process is killed and restarted.

Hundreds of simulator tasks of every type the simulator serves go through their events
(completions, errors, audits of each result, recalls and the completions after them), a share
of them with the faults ``duplicate=2``, ``reorder`` and ``drop``, delivered to the real receiver
under gunicorn and handled by a real ``python -m workers``. Meanwhile the test SIGKILLs the
worker's whole process tree (mid-job), SIGKILLs the gunicorn master (a new one takes the port),
and restarts Redis twice (SIGTERM with 1-3 s down, SIGKILL with 0.6 s down). Scale's 24 h of
retries pass in ~86 s (``time_scale``). Then one ``python -m callback_server reconcile`` run
recovers what ``drop`` hid.

At the end every event of every task has reached its handlers (a dropped task's superseded
events cannot come back: its final state must), nothing is queued, running, scheduled, failed
or quarantined, no callback was answered 500, and a handler ran twice for one delivery at most
once per worker kill (only a worker that dies between a handler's return and its record may
repeat it). The figures are printed; docs/benchmarks.md's "Soak" section reports them.

Marked ``soak``, and skipped unless pytest is given ``--soak`` (tests/conftest.py); ``make soak`` gives it.
``SOAK_TASKS`` sets the number of tasks (default 300).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests
from rq import Queue
from rq.serializers import JSONSerializer

from callback_server.config import Settings
from callback_server.deliveries import Delivery
from callback_server.devserver import web_command
from callback_server.embedded import RedisProcess, free_port
from callback_server.jobs import failure_line
from callback_server.ledger import Ledger
from callback_server.quarantine import Quarantine
from callback_server.schemas import load_callback
from scale_sim.config import Secret, SimSettings
from scale_sim.server import SimServer
from scale_sim.validation import SIM_TYPES
from tests.support.keys import LIVE_KEY
from tests.support.processes import ROOT, kill_tree, run_cli, stack_env, wait_for, wait_for_gunicorn, worker_args
from tests.support.tasks import json_body

pytestmark = pytest.mark.soak

API_KEY = "live_soak_account_0123456789"
TASKS_VARIABLE = "SOAK_TASKS"
DEFAULT_TASKS = 300
HANDLERS = "workers.handlers,tests.workers.recording_handlers,tests.workers.soak_handlers"
RETRY_INTERVALS = "0,0,0,0,0,0"
"""Six immediate retries: a worker kill spends one, a handler failing through a Redis outage another."""
RECORD_PAUSE = "0.03"
"""Seconds the ``record`` handler takes, so kills and Redis outages land mid-handler."""
TIME_SCALE = 0.001
"""Scale's 20 tries over 24 h in ~86 s: longer than any outage here, short enough to wait out."""
RESULT_EVENTS = {"completed", "audit_fixed"}
"""Simulator events whose deliveries the default handlers (``record``, ``second``) take."""
AUDIT_RESULTS = ("accepted", "fixed", "rejected", "commented")
EFFECTS = "test:effects"
"""Where the recording handlers and ``every_event`` note each completed run, "handler:delivery_id".

Named, not imported: importing a handler module here would register its handlers in the suite's
own process, where the dispatch tests register them again (and fail on the duplicate)."""
SETTLED = {"succeeded", "failed", "dropped"}
"""Simulator delivery states that will not change any more."""


def soak_tasks() -> int:
    """How many tasks (``SOAK_TASKS``, at least two per type)."""
    raw = os.environ.get(TASKS_VARIABLE, str(DEFAULT_TASKS))
    try:
        count = int(raw)
    except ValueError:
        raise pytest.UsageError(f"{TASKS_VARIABLE} must be a whole number, not {raw!r}") from None
    if count < 2 * len(SIM_TYPES):
        raise pytest.UsageError(f"{TASKS_VARIABLE} must be at least {2 * len(SIM_TYPES)}, not {count}")
    return count


@dataclass(frozen=True)
class Plan:
    """What one task goes through: its type, its faults and what the test does to it."""

    index: int
    task_type: str
    faults: tuple[str, ...]
    action: str  # complete, error, audit, recall, audit_recall

    @property
    def audit_result(self) -> str:
        return AUDIT_RESULTS[(self.index // 7) % len(AUDIT_RESULTS)]


def plan(index: int) -> Plan:
    """Types in turn; faults on 5 tasks in 10 (2 duplicated, 2 reordered, 1 dropped); actions on 4 in 7."""
    faults = {0: ("duplicate=2",), 1: ("duplicate=2",), 2: ("reorder",), 3: ("reorder",), 4: ("drop",)}
    actions = {0: "error", 1: "audit", 2: "recall", 3: "audit_recall"}
    task_type = SIM_TYPES[index % len(SIM_TYPES)]
    return Plan(index, task_type, faults.get(index % 10, ()), actions.get(index % 7, "complete"))


@dataclass
class Figures:
    """What the chaos did, for the report."""

    worker_kills: int = 0
    worker_kills_mid_job: int = 0
    web_kills: int = 0
    redis_restarts: list[str] = field(default_factory=list)


class Stack:
    """The receiver (gunicorn) and one worker process on the suite's Redis, each killable and restartable."""

    def __init__(self, env: dict[str, str], port: int, logs: Path, conn: redis.Redis, queue: Queue) -> None:
        self.env = env
        self.port = port
        self.logs = logs
        self.conn = conn
        self.queue = queue
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.figures = Figures()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.logs / log).open("ab") as out:
            return subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def start_web(self) -> None:
        """A gunicorn master with the shipped config on the fixed port; returns once it answers /healthz."""
        self.web = self._spawn(web_command(f"127.0.0.1:{self.port}"), "gunicorn.log")
        wait_for_gunicorn(self.web, self.base, self.logs / "gunicorn.log", timeout=60)

    def restart_web(self) -> None:
        """SIGKILL the master alone (as an OOM kill would); its orphaned workers must leave by themselves."""
        assert self.web is not None
        orphans = psutil.Process(self.web.pid).children(recursive=True)
        self.web.send_signal(signal.SIGKILL)
        self.web.wait(timeout=10)
        self.figures.web_kills += 1
        # gunicorn's workers notice their parent changed within a second and stop; the port is then free.
        _, alive = psutil.wait_procs(orphans, timeout=45)
        assert not alive, f"gunicorn workers outlived their master: {[p.pid for p in alive]}"
        self.start_web()

    def start_worker(self) -> None:
        self.worker = self._spawn(worker_args(), "worker.log")

    def busy(self) -> bool:
        """A job is running (RQ's started registry has it)."""
        return bool(self.conn.zcard(self.queue.started_job_registry.key))

    def kill_worker(self) -> None:
        """SIGKILL the worker's whole tree (work horse included) once a job is running, and start a new one."""
        assert self.worker is not None
        mid_job = poll(self.busy, timeout=15)
        kill_tree(self.worker)
        self.figures.worker_kills += 1
        self.figures.worker_kills_mid_job += int(mid_job)
        self.start_worker()

    def close(self) -> None:
        for proc in (self.worker, self.web):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    kill_tree(proc)


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Wait until ``condition()`` holds, for at most ``timeout`` s; whether it did (not an error if not)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def restart_redis(server: RedisProcess, figures: Figures, *, kill: bool, down: float) -> None:
    """Stop Redis (SIGTERM: it writes its AOF and exits; SIGKILL: it just dies), stay down ``down`` s, start it."""
    assert server.process is not None
    if kill:
        server.process.kill()
        server.process.wait(timeout=10)
        server.process = None
    else:
        server.stop()
    # The one fixed wait of the soak: an outage of a bounded length is the fault under test.
    time.sleep(down)
    server.start()
    figures.redis_restarts.append(f"{'SIGKILL' if kill else 'SIGTERM'} {down:.1f} s")


class SimAPI:
    """The simulator's JSON API as this account."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.session.auth = (API_KEY, "")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.session.request(method, f"{self.sim.api_url}/{path}", json=body, timeout=30)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        result: dict[str, Any] = answer.json()
        return result

    def completed(self, task_id: str) -> bool:
        return bool(self.sim.simulator.store.get_task(task_id)["status"] == "completed")


def create(api: SimAPI, callback_url: str, item: Plan) -> str:
    """Create the task; an ``error`` one fails at once, while it is still pending (completion takes a second)."""
    body = json_body(callback_url, item.task_type)
    if item.faults:
        body["metadata"] = {"sim_faults": list(item.faults)}
    task_id = str(api.call("POST", f"task/{item.task_type}", body)["task_id"])
    if item.action == "error":
        api.call("POST", f"task/{task_id}/error", {"message": "soak: attachment unreachable"})
    return task_id


def act(api: SimAPI, tasks: dict[str, Plan]) -> None:
    """Audit and recall the completed tasks that ask for it (a recalled one completes again 0.5 s later)."""
    for task_id, item in tasks.items():
        if item.action not in ("audit", "recall", "audit_recall"):
            continue
        wait_for(partial(api.completed, task_id), timeout=60, what=f"task {task_id} to complete")
        if item.action in ("audit", "audit_recall"):
            api.call("POST", f"task/{task_id}/audit", {"result": item.audit_result})
        if item.action in ("recall", "audit_recall"):
            api.call("POST", f"task/{task_id}/recall", {"complete_in": 0.5})


def settled(api: SimAPI, task_ids: list[str]) -> bool:
    """Every task is past its last event and every callback copy is out of the simulator's hands."""
    store = api.sim.simulator.store
    for task_id in task_ids:
        if store.get_task(task_id)["status"] == "pending":
            return False
        deliveries, _ = store.delivery_log(task_id)
        if any(d["state"] not in SETTLED for d in deliveries):
            return False
    return True


def expected_deliveries(api: SimAPI, tasks: dict[str, Plan]) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """(delivery id -> (task id, event)) that must reach the handlers, and every event's delivery id.

    A task's every event, except for a dropped task: Scale never called back, and the reconciler
    sees only the task's current state, so its final event is what must arrive.
    """
    must: dict[str, tuple[str, str]] = {}
    every: set[str] = set()
    for task_id, item in tasks.items():
        events = api.sim.simulator.store.events(task_id)
        assert events, f"task {task_id} has no event"
        ids = [(Delivery.from_body(load_callback(body), mode="live").delivery_id, name) for name, body in events]
        every.update(delivery for delivery, _ in ids)
        for delivery, name in ids[-1:] if "drop" in item.faults else ids:
            must[delivery] = (task_id, name)
    return must, every


def handler_runs(conn: redis.Redis) -> Counter[tuple[str, str]]:
    """(handler, delivery id) -> completed runs, from the handlers' notes."""
    runs: Counter[tuple[str, str]] = Counter()
    for item in conn.lrange(EFFECTS, 0, -1):
        handler, delivery = item.decode().split(":", 1)
        runs[handler, delivery] += 1
    return runs


def stuck(conn: redis.Redis, queue: Queue) -> dict[str, int]:
    """Whatever is still queued, half-dequeued, running, waiting for a retry or failed (all zero when done)."""
    return {
        "queued": conn.llen(queue.key),
        "intermediate": conn.llen(queue.intermediate_queue_key),
        "started": conn.zcard(queue.started_job_registry.key),
        "scheduled": conn.zcard(queue.scheduled_job_registry.key),
        "deferred": conn.zcard(queue.deferred_job_registry.key),
        "failed": conn.zcard(queue.failed_job_registry.key),
    }


def diagnosis(conn: redis.Redis, queue: Queue, unhandled: set[str]) -> str:
    """Why the soak did not drain: what is stuck, and each failed job's last error line."""
    failed = {}
    for job_id in queue.failed_job_registry.get_job_ids(cleanup=False):
        job = queue.fetch_job(job_id)
        failed[job_id] = failure_line(job) if job is not None else "(gone)"
    return f"stuck {stuck(conn, queue)}; never handled {sorted(unhandled)}; failed jobs {failed}"


@pytest.fixture
def stack(redis_conn: redis.Redis, redis_server: RedisProcess, tmp_path: Path) -> Iterator[Stack]:
    env = stack_env(redis_server.url, CALLBACK_HANDLERS=HANDLERS, HANDLER_RETRY_INTERVALS=RETRY_INTERVALS)
    queue = Queue(Settings.from_env(env).callback_queue, connection=redis_conn, serializer=JSONSerializer)
    running = Stack(env, free_port(), tmp_path, redis_conn, queue)
    try:
        yield running
    finally:
        running.close()
        if not redis_server.running:
            redis_server.start()  # the next test's fixture expects it up


def test_soak_nothing_lost_nothing_stuck_through_worker_web_and_redis_kills(
    stack: Stack,
    redis_server: RedisProcess,
    redis_conn: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    begun = time.monotonic()
    rng = random.Random()
    count = soak_tasks()
    redis_conn.set("test:sleep:record", RECORD_PAUSE)
    stack.start_web()
    stack.start_worker()
    settings = SimSettings(
        callback_auth_key=Secret(LIVE_KEY),
        completion_delay=1.0,  # long enough to fail a task at creation through the API first
        time_scale=TIME_SCALE,
        default_callback_url=f"{stack.base}/callback",
        data_path=str(tmp_path / "sim.sqlite3"),
        callback_timeout=10.0,
    )
    figures = stack.figures
    with SimServer(settings) as sim:
        api = SimAPI(sim)
        plans = [plan(i) for i in range(count)]
        quarter = -(-count // 4)
        batches = [plans[i : i + quarter] for i in range(0, count, quarter)]
        chaos: list[Callable[[], None]] = [
            stack.kill_worker,
            lambda: restart_redis(redis_server, figures, kill=False, down=rng.uniform(1.0, 3.0)),
            stack.restart_web,
            lambda: restart_redis(redis_server, figures, kill=True, down=0.6),
        ]
        tasks: dict[str, Plan] = {}
        previous: dict[str, Plan] = {}
        for batch, fault in zip(batches, chaos, strict=True):
            created = {create(api, f"{stack.base}/callback", item): item for item in batch}
            tasks.update(created)
            act(api, previous)  # the previous batch's audits and recalls, while this batch's callbacks flow
            fault()
            previous = created
        act(api, previous)
        stack.kill_worker()
        stack.restart_web()
        stack.kill_worker()

        task_ids = list(tasks)
        wait_for(
            lambda: settled(api, task_ids),
            timeout=300,
            interval=0.5,
            what="the simulator to finish every event and every callback",
        )
        must, every = expected_deliveries(api, tasks)
        sim_deliveries = [d for t in task_ids for d in sim.simulator.store.delivery_log(t)[0]]
        attempts = [a for t in task_ids for a in sim.simulator.store.delivery_log(t)[1]]
        gave_up = {t for t in task_ids if any(d["state"] == "failed" for d in sim.simulator.store.delivery_log(t)[0])}

        reconcile_env = {**stack.env, "SCALE_API_URL": sim.api_url, "SCALE_API_KEY": API_KEY}
        reconciled = run_cli(reconcile_env, "reconcile", timeout=300)

    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    summary = re.search(r"seen (\d+), already had (\d+), queued (\d+), quarantined (\d+)", reconciled.stdout)
    assert summary, reconciled.stdout
    seen, had, queued, quarantined = map(int, summary.groups())
    assert (seen, quarantined) == (count, 0), reconciled.stdout
    recovered = set(re.findall(r"queued ([0-9a-f]{24})", reconciled.stdout))
    dropped = {task_id for task_id, item in tasks.items() if "drop" in item.faults}
    assert dropped <= recovered, sorted(dropped - recovered)
    # A task whose every callback copy got its 200 was already had: a 200 is never forgotten.
    assert recovered - dropped <= gave_up, sorted(recovered - dropped - gave_up)

    def handled() -> bool:
        runs = handler_runs(redis_conn)
        done = {delivery for (_, delivery) in runs}
        return set(must) <= done and not any(stuck(redis_conn, stack.queue).values())

    drained = poll(handled, timeout=300, interval=0.5)
    assert drained, diagnosis(redis_conn, stack.queue, set(must) - {d for (_, d) in handler_runs(redis_conn)})
    # Nothing more may happen: the worker stays up, idle, over a few maintenance passes.
    assert stack.worker is not None and stack.worker.poll() is None

    runs = handler_runs(redis_conn)
    missing = {
        delivery: (task_id, event)
        for delivery, (task_id, event) in must.items()
        if runs[("every_event", delivery)] == 0
        or (event in RESULT_EVENTS and (runs[("record", delivery)] == 0 or runs[("second", delivery)] == 0))
    }
    assert not missing, missing
    spurious = {delivery for (_, delivery) in runs} - every
    assert not spurious, f"handled deliveries that are no event of any task: {sorted(spurious)}"
    assert stuck(redis_conn, stack.queue) == dict.fromkeys(
        ("queued", "intermediate", "started", "scheduled", "deferred", "failed"), 0
    )
    assert Quarantine(redis_conn).count() == 0
    # The ledger maps every expected delivery to its task.
    book = {e.delivery_id: e.task_id for e in Ledger(redis_conn, ttl=3 * 86400).recent(limit=10 * len(must))}
    assert {d: t for d, (t, _) in must.items()} == {d: book.get(d) for d in must}
    # No authenticated body ever gets a 500.
    assert not [a for a in attempts if a["status_code"] == 500]

    repeats = sum(n - 1 for n in runs.values() if n > 1)
    repeated = sorted(f"{handler}:{delivery}" for (handler, delivery), n in runs.items() if n > 1)
    assert repeats <= figures.worker_kills, repeated
    assert figures.worker_kills == 3 and figures.web_kills == 2 and len(figures.redis_restarts) == 2

    events = Counter(event for _, event in must.values())
    refused = sum(1 for a in attempts if a["status_code"] != 200)
    report = (
        f"soak: {count} tasks ({len(SIM_TYPES)} types), {len(must)} deliveries to handle "
        f"({', '.join(f'{e} {n}' for e, n in sorted(events.items()))}), {sum(runs.values())} handler runs; "
        f"simulator: {len(sim_deliveries)} callback copies, {len(attempts)} tries, {refused} not answered 200, "
        f"{len(gave_up)} given up; reconcile: seen {seen}, already had {had}, queued {queued} "
        f"({len(dropped)} dropped tasks); kills: worker tree {figures.worker_kills} "
        f"({figures.worker_kills_mid_job} mid-job), gunicorn master {figures.web_kills}, "
        f"redis {', '.join(figures.redis_restarts)}; repeats {repeats} {repeated}; "
        f"{time.monotonic() - begun:.0f} s"
    )
    with capsys.disabled():
        print(f"\n{report}")

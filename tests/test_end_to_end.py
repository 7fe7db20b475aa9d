"""The whole product: the simulator creates and completes tasks through the official client, calls
back the real gunicorn receiver, real worker processes run the handlers, and the reconciler
recovers what the callbacks lost."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from scaleapi import ScaleClient

from callback_server.config import Secret as ReceiverSecret
from callback_server.deliveries import DeliveryQueue
from callback_server.embedded import RedisProcess, free_port
from callback_server.quarantine import Quarantine
from callback_server.reconcile import Reconciler
from callback_server.scale_api import ScaleAPI
from callback_server.schemas import REFERENCE_TYPES
from scale_sim.config import Secret, SimSettings
from scale_sim.server import SimServer
from tests.support.handlers import effects
from tests.support.keys import LIVE_KEY
from tests.support.processes import gunicorn, process, run_cli, stack_env, wait_for, worker_args
from tests.support.settings import make_settings
from tests.support.sims import prompt_sim_settings
from tests.support.tasks import CLIENT_TYPES, json_body

pytestmark = pytest.mark.slow

API_KEY = "test_end_to_end_account"


@dataclass
class Stack:
    """A running receiver, worker and simulator on one private Redis."""

    receiver: str
    sim: SimServer
    env: dict[str, str]
    conn: redis.Redis

    @property
    def callback_url(self) -> str:
        return f"{self.receiver}/callback"

    def client(self) -> ScaleClient:
        return ScaleClient(API_KEY, api_instance_url=self.sim.api_url)

    def create(self, task_type: str, *, faults: list[str] | None = None, callback_url: str | None = None) -> str:
        params = json_body(callback_url or self.callback_url, task_type)
        if faults:
            params["metadata"] = {"sim_faults": faults}
        return str(self.client().create_task(CLIENT_TYPES[task_type], **params).id)

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.client().get_task(task_id).as_dict())

    def handled(self) -> dict[str, list[str]]:
        """Handler runs per delivery id, from the recording handlers."""
        runs: dict[str, list[str]] = {}
        for entry in effects(self.conn):
            handler, delivery = entry.split(":", 1)
            runs.setdefault(delivery, []).append(handler)
        return runs


@pytest.fixture
def stack(redis_conn: redis.Redis, redis_server: RedisProcess, tmp_path: Path) -> Iterator[Stack]:
    env = stack_env(redis_server.url)
    with gunicorn(env, free_port(), tmp_path / "gunicorn.log") as base:
        settings = prompt_sim_settings(f"{base}/callback", tmp_path / "sim.sqlite3")
        with SimServer(settings) as sim, process(worker_args("--no-scheduler"), env, tmp_path / "worker.log"):
            env = {**env, "SCALE_API_URL": sim.api_url, "SCALE_API_KEY": API_KEY}
            yield Stack(base, sim, env, redis_conn)


def delivered(stack: Stack, task_id: str) -> bool:
    return stack.task(task_id).get("callback_succeeded") is True


def gave_up(stack: Stack, task_id: str) -> bool:
    return stack.task(task_id).get("callback_succeeded") is False


def reconcile_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(stack.env, "reconcile", "--hours", "1", *args)


def test_every_type_through_the_client_each_handler_once_even_with_duplicates_and_reordering(
    stack: Stack,
) -> None:
    # A reordered callback is held until the next task's goes out, so the plain ones come last.
    reordered = [stack.create(t, faults=["reorder"]) for t in REFERENCE_TYPES]
    duplicated = [stack.create(t, faults=["duplicate=3"]) for t in REFERENCE_TYPES]
    plain = [stack.create(t) for t in REFERENCE_TYPES]
    everything = plain + duplicated + reordered
    wait_for(lambda: all(delivered(stack, t) for t in everything), timeout=60, what="every callback")
    wait_for(lambda: len(stack.handled()) == len(everything), timeout=30, what="every delivery handled")
    wait_for(lambda: stack.conn.llen("rq:queue:callbacks") == 0, what="the queue to drain")
    runs = stack.handled()
    assert all(sorted(handlers) == ["record", "second"] for handlers in runs.values()), runs
    # Every copy of a duplicated callback reached the receiver, and none made a second job.
    for task_id in duplicated:
        log = stack.client().api.get_request(f"task/{task_id}/deliveries")
        attempts = [a for a in log["attempts"] if a["status_code"] == 200]
        assert len(attempts) == 3, log
    assert not stack.conn.keys("scb:quarantine:*")


def test_reconciler_recovers_dropped_rejected_and_unreachable_callbacks_exactly_once(stack: Stack) -> None:
    closed = f"http://127.0.0.1:{free_port()}/callback"  # a receiver that is down for the whole schedule
    ok = [stack.create(t) for t in REFERENCE_TYPES]
    dropped = [stack.create(t, faults=["drop"]) for t in REFERENCE_TYPES]
    wrong_key = [stack.create(t, faults=["wrong_key"]) for t in REFERENCE_TYPES]
    down = [stack.create(t, callback_url=closed) for t in REFERENCE_TYPES]
    wait_for(lambda: all(delivered(stack, t) for t in ok), timeout=60, what="the healthy callbacks")
    wait_for(
        lambda: all(gave_up(stack, t) for t in wrong_key + down),
        timeout=60,
        what="Scale to give up on the failing callbacks",
    )
    wait_for(lambda: len(stack.handled()) == len(ok), what="the delivered tasks to be handled")
    assert all(stack.task(t)["status"] == "completed" for t in dropped)

    first = reconcile_cli(stack)
    assert first.returncode == 0, first.stderr
    assert "seen 28, already had 7, queued 21, quarantined 0" in first.stdout
    for task_id in dropped + wrong_key + down:
        assert f"queued {task_id}" in first.stdout
    for task_id in ok:
        assert task_id not in first.stdout

    wait_for(lambda: len(stack.handled()) == 28, timeout=30, what="the recovered tasks to be handled")
    second = reconcile_cli(stack)
    assert second.returncode == 0, second.stderr
    assert "seen 28, already had 28, queued 0" in second.stdout
    wait_for(lambda: stack.conn.llen("rq:queue:callbacks") == 0, what="the queue to drain")
    runs = stack.handled()
    assert len(runs) == 28
    assert all(sorted(handlers) == ["record", "second"] for handlers in runs.values())

    runs_out = run_cli(stack.env, "reconcile", "runs", timeout=60)
    assert runs_out.stdout.count("complete") == 2
    assert "queued 21" in runs_out.stdout and "queued 0" in runs_out.stdout
    assert API_KEY not in first.stdout + first.stderr + second.stdout + second.stderr + runs_out.stdout


def test_reconciliation_racing_live_callbacks_makes_no_duplicate(stack: Stack) -> None:
    task_ids = [stack.create(REFERENCE_TYPES[i % 7], faults=["delay=0.3"]) for i in range(21)]
    settings = make_settings(stack.env["REDIS_URL"])
    api = ScaleAPI(stack.sim.api_url, ReceiverSecret(API_KEY))
    reconciler = Reconciler(api, DeliveryQueue.from_settings(settings, stack.conn), Quarantine(stack.conn))
    stop = threading.Event()
    queued_by_reconciler: list[int] = []

    def race() -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            queued_by_reconciler.append(reconciler.run(now - timedelta(hours=1), now + timedelta(minutes=1)).queued)

    racer = threading.Thread(target=race)
    racer.start()
    try:
        wait_for(lambda: all(delivered(stack, t) for t in task_ids), timeout=60, what="every callback")
    finally:
        stop.set()
        racer.join()
        reconciler.close()
    wait_for(lambda: len(stack.handled()) == 21, timeout=30, what="every task handled")
    wait_for(lambda: stack.conn.llen("rq:queue:callbacks") == 0, what="the queue to drain")
    runs = stack.handled()
    assert len(runs) == 21
    assert all(sorted(handlers) == ["record", "second"] for handlers in runs.values())
    assert len(queued_by_reconciler) >= 2
    assert sum(queued_by_reconciler) <= 21


def test_rate_limited_pagination_over_several_pages(
    redis_conn: redis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    settings = SimSettings(
        callback_auth_key=Secret(LIVE_KEY),
        completion_delay=0.0,
        time_scale=0.0001,
        data_path=str(tmp_path / "sim.sqlite3"),
        faults=("drop",),
    )
    with SimServer(settings) as sim:
        client = ScaleClient(API_KEY, api_instance_url=sim.api_url)
        for i in range(230):
            client.create_task(
                CLIENT_TYPES[REFERENCE_TYPES[i % 7]], **json_body("http://127.0.0.1:9/cb", REFERENCE_TYPES[i % 7])
            )
        wait_for(
            lambda: client.api.get_request("tasks", params={"status": "completed", "limit": 1})["total"] == 230,
            timeout=60,
            what="all tasks to complete",
        )
    # Half a request per second: even a slow machine pages faster than that, so 429s must come.
    limited = SimSettings(**{**settings.__dict__, "rate_limit": 0.5})
    with SimServer(limited, start_scheduler=False) as sim:
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            threading.Event().wait(min(seconds, 1.0))

        receiver_settings = make_settings(redis_server.url)
        api = ScaleAPI(sim.api_url, ReceiverSecret(API_KEY), sleep=sleep)
        reconciler = Reconciler(api, DeliveryQueue.from_settings(receiver_settings, redis_conn), Quarantine(redis_conn))
        now = datetime.now(UTC)
        try:
            summary = reconciler.run(now - timedelta(hours=1), now + timedelta(minutes=1))
        finally:
            reconciler.close()
    assert summary.complete, summary.errors
    assert (summary.seen, summary.queued) == (230, 230)
    assert waits, "the simulator's 429s were not waited out"
    assert redis_conn.llen("rq:queue:callbacks") == 230

"""The reconciler against the simulator, every callback dropped: what only reconciliation can bring back.

A task completed a month after its creation, an error at creation, an audit and a recall whose
callbacks were lost are each recovered by one run of the real command, and a real worker runs each
handler once; the next run queues nothing. With SCALE_PROJECTS, only the named projects are swept.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from callback_server.config import Secret
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.embedded import RedisProcess
from callback_server.reconcile import Marks, build_reconciler
from callback_server.times import parse_instant
from tests.support.jobs import queued_jobs
from tests.support.processes import process, run_cli, stack_env, wait_for, worker_args
from tests.support.settings import make_settings
from tests.support.sims import Sim, dropping_sim

API_KEY = "live_reconcile_simulator_key"
MONTH = 30 * 24 * 3600

SEEN = "test:events"
"""Where tests.workers.event_handlers notes its runs (not imported: that would register its handlers here)."""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    with dropping_sim(tmp_path, API_KEY) as simulator:
        yield simulator


def reconcile(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "reconcile", *args)


def seen(conn: redis.Redis) -> list[tuple[str, ...]]:
    return [tuple(item.decode().split(":", 3)) for item in conn.lrange(SEEN, 0, -1)]


@pytest.mark.slow
def test_one_run_recovers_a_late_completion_an_error_an_audit_and_a_recall_each_handler_once(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    late, failed, audited, recalled = (sim.create() for _ in range(4))
    # A month between creation and completion (week urgency, then rework), without sleeping.
    sim.call("POST", f"task/{late}/backdate", seconds=MONTH)
    done = sim.complete(late)
    assert parse_instant(done["completed_at"]) - parse_instant(done["created_at"]) >= timedelta(days=30)
    sim.call("POST", f"task/{failed}/error")
    # These two completions did reach the receiver; only the audit's and the recall's callbacks were lost.
    queue = DeliveryQueue.from_settings(make_settings(redis_server.url), redis_conn)
    for task_id in (audited, recalled):
        task = sim.complete(task_id)
        body = {"task_id": task_id, "status": task["status"], "response": task["response"], "task": task}
        assert queue.accept(Delivery.from_body(body, mode="live"))
    sim.call("POST", f"task/{audited}/audit", result="accepted")
    sim.call("POST", f"task/{recalled}/recall", complete_in=None)

    env = stack_env(
        redis_server.url,
        CALLBACK_HANDLERS="tests.workers.event_handlers",
        SCALE_API_URL=sim.server.api_url,
        SCALE_API_KEY=API_KEY,
    )
    with process(worker_args(), env, tmp_path / "worker.log"):
        first = reconcile(env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "seen 4, already had 0, queued 4, quarantined 0" in first.stdout
        for line in (
            "completed: queued 1",
            "error: queued 1",
            "audit: queued 1",
            "recalled: queued 1",
            "scope: the whole account (SCALE_PROJECTS is unset)",
        ):
            assert line in first.stdout, first.stdout
        wait_for(lambda: len(seen(redis_conn)) >= 11, timeout=60, what="every handler run")
        wait_for(lambda: redis_conn.llen("rq:queue:callbacks") == 0, what="the queue to drain")

        second = reconcile(env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "seen 4, already had 4, queued 0" in second.stdout
        assert redis_conn.llen("rq:queue:callbacks") == 0

    runs = seen(redis_conn)
    assert max(Counter((handler, delivery) for handler, _, _, delivery in runs).values()) == 1
    assert Counter((handler, event, review) for handler, event, review, _ in runs) == Counter(
        {
            ("results", "completed", "-"): 3,
            ("everything", "completed", "-"): 3,  # late + the two delivered
            ("everything", "error", "-"): 1,
            ("everything", "audit", "accepted"): 1,
            ("reviews", "audit", "accepted"): 1,
            ("everything", "recalled", "-"): 1,
            ("reviews", "recalled", "-"): 1,
        }
    )
    assert API_KEY not in first.stdout + first.stderr + second.stdout + second.stderr


def test_each_named_project_is_swept_and_a_third_is_not_touched(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis
) -> None:
    tasks = {project: sim.create(project) for project in ("kitchen", "garden", "attic")}
    for task_id in tasks.values():
        sim.complete(task_id)
    settings = replace(
        make_settings(redis_server.url),
        scale_api_key=Secret(API_KEY),
        scale_api_url=sim.server.api_url,
        scale_projects=("kitchen", "garden"),
    )
    reconciler = build_reconciler(settings, redis_conn)
    try:
        summary = reconciler.run_scheduled()
        again = reconciler.run_scheduled()
    finally:
        reconciler.close()
    assert summary.complete, summary.errors
    assert summary.scope == "projects kitchen, garden"
    assert sorted(summary.queued_task_ids) == sorted([tasks["kitchen"], tasks["garden"]])
    assert sorted(job.args[0]["task_id"] for job in queued_jobs(redis_conn)) == sorted(summary.queued_task_ids)
    assert set(Marks(redis_conn).all()) == {"kitchen", "garden"}
    assert (again.queued, again.already_had) == (0, 2)

"""A full Redis (maxmemory under noeviction) never loses a delivery that was answered ``queued``.

The scenario of the report that found a loss: the Procfile's web process and one worker with a
catch-all handler, Redis at maxmemory = used + 300 KB, 400 distinct callbacks with 600 B of
metadata each (most answered 503, some ``queued``), Redis left full while the worker meets it, then
given room. Every delivery answered ``queued`` must run its handler (proved by a file, not by
Redis) or be visible in the failed registry. Repeated over rounds, so that a loss of one delivery
in sixty would show with near certainty (over 300 queued deliveries in all), and a round in which
Redis turns full at a random moment of the worker's backlog, so that the refusal lands at every
step of RQ's bookkeeping in turn.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from callback_server.deliveries import delivery_id
from callback_server.embedded import RedisProcess, free_port
from tests.support.fixtures import load_fixture
from tests.support.http import post_callback
from tests.support.processes import gunicorn, process, stack_env, wait_for, worker_args

pytestmark = pytest.mark.slow

HEADROOM = 300_000
"""Bytes of room above what Redis uses when the report's round starts."""
ROUNDS = 5
"""Rounds in which Redis turns full at a random moment while the worker works through a backlog."""
BACKLOG = 60
FULL_FOR = 3.0
"""Seconds Redis stays full once the worker has met it."""


def body(task_id: str) -> dict[str, object]:
    callback = load_fixture("categorization")
    callback["task_id"] = callback["task"]["task_id"] = task_id
    callback["task"]["metadata"] = {"note": "x" * 600}
    return callback


def refused_writes(log: Path) -> int:
    text = log.read_text(encoding="utf-8", errors="replace")
    return text.count("OutOfMemoryError") + text.count("OOM command not allowed")


def test_every_delivery_answered_queued_while_redis_is_full_runs_or_stays_visible(
    redis_conn: redis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    runs.touch()
    env = stack_env(
        redis_server.url,
        CALLBACK_HANDLERS="tests.workers.file_handlers",
        TEST_RUNS_FILE=str(runs),
        TEST_HANDLER_SECONDS="0.02",
        HANDLER_RETRY_INTERVALS="1,1,1",
    )
    worker_log = tmp_path / "worker.log"
    queued: list[str] = []
    answers: dict[int, int] = {}
    queue = Queue("callbacks", connection=redis_conn, serializer=JSONSerializer)
    chance = random.Random(20261204)

    def send(task_id: str) -> None:
        callback = body(task_id)
        answer = post_callback(base, callback)
        answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
        if answer.status_code == 200 and answer.json() == {"status": "queued"}:
            queued.append(delivery_id(callback))

    def full_until_the_worker_meets_it() -> None:
        met = refused_writes(worker_log)
        wait_for(lambda: refused_writes(worker_log) > met, timeout=60, what="the worker to meet the full Redis")
        time.sleep(FULL_FOR)  # the outage itself (its length is the scenario), not a wait for a state
        redis_conn.config_set("maxmemory", 0)

    with gunicorn(env, free_port(), tmp_path / "web.log") as base, process(worker_args(), env, worker_log):
        try:
            # The report's round: 400 callbacks into 300 KB of room; most are answered 503.
            used = int(redis_conn.info("memory")["used_memory"])
            redis_conn.config_set("maxmemory", used + HEADROOM)
            for n in range(400):
                send(f"report-{n}")
            assert answers.get(503, 0) > 0, answers
            full_until_the_worker_meets_it()
            # Rounds in which every write is refused from a random moment of the worker's backlog on.
            for round_ in range(ROUNDS):
                for n in range(BACKLOG):
                    send(f"round-{round_}-{n}")
                time.sleep(chance.uniform(0, BACKLOG * 0.02))  # a random point in the backlog's processing
                redis_conn.config_set("maxmemory", 1)
                full_until_the_worker_meets_it()
        finally:
            redis_conn.config_set("maxmemory", 0)
        assert len(queued) >= 300, answers

        def settled() -> bool:
            ran = set(runs.read_text().split())
            failed = set(queue.failed_job_registry.get_job_ids())
            return set(queued) <= ran | failed

        wait_for(settled, timeout=240, interval=0.5, what="every queued delivery to run or fail visibly")
    ran = runs.read_text().split()
    failed = set(queue.failed_job_registry.get_job_ids())
    lost = [d for d in queued if d not in ran and d not in failed]
    assert not lost, f"{len(lost)} of {len(queued)} deliveries answered queued were lost: {lost[:5]}"
    assert not failed & set(queued), "a refused write failed a delivery instead of waiting for room"

"""A delivery whose worker died is retried and then finishes: it does not end in the failed registry.

Found by the soak (tests/test_soak.py): RQ 3.0 keeps a dead try in the job's execution registry
60 s longer than the try's own record. A retry that succeeded inside that minute made
``job.delete()`` (``RESULT_TTL`` 0) raise ``ValueError: Execution ... not found in Redis``, which
turned the success into a failed try; every retry inside the minute failed the same way, so with
immediate retries a delivery whose handlers had all run ended in the failed registry.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.executions import Execution, ExecutionRegistry
from rq.serializers import JSONSerializer

from callback_server.config import Settings
from callback_server.ledger import Ledger
from tests.support.handlers import effects
from tests.support.jobs import enqueue
from tests.support.processes import kill_tree, process, stack_env, wait_for, worker_args

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Jobs enqueued with immediate retries, as the workers' HANDLER_RETRY_INTERVALS=0,0 says."""
    return replace(settings, handler_retry_intervals=(0, 0))


def test_a_retry_after_the_worker_died_finishes_the_delivery(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    delivery = enqueue(settings, redis_conn, "categorization").delivery_id
    redis_conn.set(f"test:hang:second:{delivery}", 1)  # the first try hangs in `second`, after `record` is done
    env = stack_env(settings.redis_url)
    log = tmp_path / "worker.log"
    with process(worker_args(), env, log) as proc:
        wait_for(
            lambda: f"second:{delivery}" in effects(redis_conn, "test:started"),
            timeout=30,
            what="the hanging handler to start",
        )
        kill_tree(proc)
    # The dead try's record expires 61 s after its last heartbeat; the job's list of tries keeps it
    # 60 s longer. A worker that comes back after the record expired (no other worker was running)
    # retries the job at once, inside that minute.
    tries = ExecutionRegistry(delivery, connection=redis_conn)
    dead = tries.get_execution_ids()
    assert len(dead) == 1
    wait_for(
        lambda: not redis_conn.exists(Execution(dead[0], delivery, connection=redis_conn).key),
        timeout=90,
        interval=0.5,
        what="the dead try's record to expire",
    )
    assert tries.get_execution_ids() == dead
    with process(worker_args(), env, log) as proc:
        wait_for(lambda: f"second:{delivery}" in effects(redis_conn), timeout=60, what="the retry to run `second`")
        queue = Queue(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
        book = Ledger(redis_conn, ttl=settings.ledger_ttl)

        def ended() -> bool:
            entry = book.delivery(delivery)
            finished = entry is not None and entry.state == "done" and not redis_conn.exists(f"rq:job:{delivery}")
            return finished or queue.failed_job_registry.count > 0

        wait_for(ended, timeout=30, what="the delivery to end")
        assert proc.poll() is None
    assert queue.failed_job_registry.get_job_ids() == [], log.read_text()[-3000:]
    assert "not found in Redis" not in log.read_text()
    entry = book.delivery(delivery)
    assert entry is not None and entry.state == "done", entry
    assert effects(redis_conn).count(f"record:{delivery}") == 1
    assert effects(redis_conn).count(f"second:{delivery}") == 1
    assert redis_conn.zcard(queue.started_job_registry.key) == 0

"""The lease: fencing a run that lost it, not recovering a live one, failing jobs that kill workers,
and a dashboard that does not touch running jobs."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from callback_server import create_app
from callback_server.config import Secret, Settings
from callback_server.jobs import failure_text
from tests.processes import process, wait_for, worker_args
from tests.workers.conftest import effects, enqueue
from tests.workers.test_crash import worker_env
from workers.lease import lease_key
from workers.worker import MAX_RECOVERIES, build_worker


def queue_of(settings: Settings, conn: redis.Redis) -> Queue:
    return Queue(settings.queue_name, connection=conn, serializer=JSONSerializer)


def test_a_run_that_lost_its_lease_records_nothing_and_stops(
    settings: Settings, redis_conn: redis.Redis, recording: ModuleType
) -> None:
    settings = replace(settings, retry_intervals=(0,))
    redis_conn.set("test:lose_lease:record", 1)
    delivery = enqueue(settings, redis_conn, "annotation")
    worker = build_worker(settings, connection=redis.Redis.from_url(settings.redis_url))
    worker.work(burst=True, max_jobs=1)
    d = delivery.delivery_id
    # `record` ran but could not record; `second` never started; the job was neither failed nor retried.
    assert effects(redis_conn, "test:started") == [f"record:{d}"]
    assert redis_conn.hkeys(f"scb:done:{d}") == [b"workers.handlers.annotation.log_annotation"]
    job = queue_of(settings, redis_conn).fetch_job(d)
    assert job is not None and job.get_status() == "started"
    assert job.retries_left == 1
    assert FailedJobRegistry(queue=queue_of(settings, redis_conn)).count == 0
    # Whoever recovers it runs what was not recorded: `record`, which was in flight when the lease
    # lapsed (the one documented double run), and `second`, once.
    assert worker.recover_abandoned(queue_of(settings, redis_conn)) == [d]
    worker.work(burst=True)
    assert effects(redis_conn) == [f"record:{d}", f"record:{d}", f"second:{d}"]


def test_a_job_with_a_live_lease_is_never_recovered(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    delivery = enqueue(settings, redis_conn, "comparison")
    queue = queue_of(settings, redis_conn)
    job = queue.fetch_job(delivery.delivery_id)
    assert job is not None
    # A started job whose registry score is long past (a late heartbeat, a skewed clock) but whose lease lives.
    redis_conn.lrem(queue.key, 1, job.id)
    redis_conn.hset(job.key, "status", "started")
    redis_conn.zadd(queue.started_job_registry.key, {f"{job.id}:exec1": time.time() - 3600})
    redis_conn.set(lease_key(job.id), "someone-else", px=60_000)
    worker = build_worker(settings, connection=redis.Redis.from_url(settings.redis_url))
    assert worker.recover_abandoned(queue) == []
    assert redis_conn.llen(queue.key) == 0
    redis_conn.delete(lease_key(job.id))
    assert worker.recover_abandoned(queue) == [job.id]
    assert redis_conn.lrange(queue.key, 0, -1) == [job.id.encode()]
    assert job.get_status(refresh=True) == "queued"
    assert job.retries_left == 5  # recovery spends no retry


def test_dashboard_does_not_touch_a_job_whose_heartbeat_is_late(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    delivery = enqueue(settings, redis_conn, "categorization")
    queue = queue_of(settings, redis_conn)
    redis_conn.lrem(queue.key, 1, delivery.delivery_id)
    redis_conn.hset(f"rq:job:{delivery.delivery_id}", "status", "started")
    redis_conn.zadd(queue.started_job_registry.key, {f"{delivery.delivery_id}:exec1": time.time() - 3600})
    app = create_app(replace(settings, dashboard_password=Secret("pw")))
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
    assert app.test_client().get("/dashboard/", headers=auth).status_code == 200
    job = queue.fetch_job(delivery.delivery_id)
    assert job is not None and job.get_status() == "started" and job.retries_left == 5
    assert redis_conn.zcard(queue.started_job_registry.key) == 1


@pytest.mark.slow
def test_a_job_that_keeps_killing_its_worker_is_failed_not_run_forever(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    redis_conn.set("test:kill:record", 100)
    delivery = enqueue(settings, redis_conn, "transcription")
    env = worker_env(settings)
    failed = FailedJobRegistry(queue=queue_of(settings, redis_conn))
    starts = 0
    while delivery.delivery_id not in failed.get_job_ids(cleanup=False):
        starts += 1
        assert starts <= MAX_RECOVERIES + 3, "the job was never failed"
        with process(worker_args("--no-scheduler"), env, tmp_path / "worker.log") as proc:
            wait_for(lambda: proc.poll() is not None or delivery.delivery_id in failed.get_job_ids(cleanup=False),
                     timeout=20, what="the worker to die or fail the job")
    runs = effects(redis_conn, "test:started").count(f"record:{delivery.delivery_id}")
    assert runs == MAX_RECOVERIES + 1
    job = queue_of(settings, redis_conn).fetch_job(delivery.delivery_id)
    assert job is not None and job.get_status() == "failed"
    assert "its worker died" in failure_text(job)

"""The sweep that queues again a job left in no list or registry (workers/rescue.py), on a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from callback_server.config import Settings
from callback_server.exceptions import FailureNotRecordedError
from tests.support.jobs import enqueue
from workers.rescue import LOCK_KEY, ORPHAN_GRACE, rescue_orphans, sweep_if_due
from workers.worker import CallbackWorker, build_worker


def queue_of(settings: Settings, conn: redis.Redis) -> Queue:
    return Queue(settings.callback_queue, connection=conn, serializer=JSONSerializer)


def orphaned(settings: Settings, conn: redis.Redis) -> tuple[Queue, str]:
    """The queue, and a job accepted through the real path then taken off it: in no list or registry."""
    queue = queue_of(settings, conn)
    job_id = enqueue(settings, conn, "categorization").delivery_id
    conn.lrem(queue.key, 1, job_id)
    return queue, job_id


def test_a_job_in_no_list_is_queued_again_on_a_second_look_past_the_grace(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    queue = queue_of(settings, redis_conn)
    lost = enqueue(settings, redis_conn, "categorization").delivery_id
    kept = enqueue(settings, redis_conn, "phonecall").delivery_id
    redis_conn.lrem(queue.key, 1, lost)  # as RQ's intermediate-queue cleanup does after a refused write
    assert rescue_orphans(queue, now=1000.0, grace=10) == []  # first look: only marked
    assert rescue_orphans(queue, now=1005.0, grace=10) == []  # still within the grace
    assert rescue_orphans(queue, now=1011.0, grace=10) == [lost]
    assert queue.get_job_ids() == [kept, lost]
    assert redis_conn.hget(f"rq:job:{lost}", "status") == b"queued"
    assert redis_conn.hget(f"rq:job:{lost}", "scb_orphan_seen") is None
    assert rescue_orphans(queue, now=2000.0, grace=10) == []  # in the queue now: left alone


def test_jobs_in_any_registry_finished_ones_and_other_queues_are_left_alone(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    queue = queue_of(settings, redis_conn)
    ids = [enqueue(settings, redis_conn, name).delivery_id for name in ("categorization", "phonecall", "annotation")]
    started, failed, finished = ids
    redis_conn.delete(queue.key)
    redis_conn.zadd(queue.started_job_registry.key, {f"{started}:some-execution": 1})
    redis_conn.zadd(queue.failed_job_registry.key, {failed: 1})
    redis_conn.hset(f"rq:job:{finished}", "status", "finished")
    other = enqueue(settings, redis_conn, "transcription").delivery_id
    redis_conn.delete(queue.key)
    redis_conn.hset(f"rq:job:{other}", "origin", "another-queue")
    for moment in (1000.0, 2000.0, 3000.0):
        assert rescue_orphans(queue, now=moment, grace=10) == []
    assert redis_conn.hget(f"rq:job:{started}", "scb_orphan_seen") is None


def test_a_mark_from_a_passing_look_is_cleared_once_the_job_is_placed(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    queue, job = orphaned(settings, redis_conn)
    assert rescue_orphans(queue, now=1000.0, grace=10) == []
    redis_conn.rpush(queue.key, job)  # back in a list before the second look
    assert rescue_orphans(queue, now=1011.0, grace=10) == []
    redis_conn.lrem(queue.key, 1, job)
    assert rescue_orphans(queue, now=1012.0, grace=10) == []  # a new first look: the old mark was cleared


def test_one_sweep_per_interval_and_none_while_redis_is_full(settings: Settings, redis_conn: redis.Redis) -> None:
    queue, job = orphaned(settings, redis_conn)
    sweep_if_due(queue, interval=30)  # marks it
    assert redis_conn.ttl(LOCK_KEY) > 0
    assert redis_conn.hget(f"rq:job:{job}", "scb_orphan_seen") is not None
    redis_conn.hset(f"rq:job:{job}", "scb_orphan_seen", 0)  # as if the first look were long ago
    assert sweep_if_due(queue, interval=30) == []  # another worker swept within the interval
    redis_conn.delete(LOCK_KEY)
    try:
        redis_conn.config_set("maxmemory", 1)
        assert sweep_if_due(queue, interval=30) == []  # refused, quietly: the next maintenance tries again
    finally:
        redis_conn.config_set("maxmemory", 0)
    assert sweep_if_due(queue, interval=30) == [job]


class FillsRedisAsItSchedules(Queue):
    """Redis turns full between RQ's status write and its transaction, as the web tier's writes make it do."""

    def schedule_job(self, *args: Any, **kwargs: Any) -> Any:
        self.connection.config_set("maxmemory", 1)
        return super().schedule_job(*args, **kwargs)


def test_a_failure_whose_record_redis_refuses_raises_instead_of_passing_for_recorded(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    """RQ sets the status outside its transaction, then logs the refused transaction and returns."""
    queue = FillsRedisAsItSchedules(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    job = queue.fetch_job(enqueue(settings, redis_conn, "categorization").delivery_id)
    assert job is not None and job.retry_intervals and job.retry_intervals[0] > 0
    redis_conn.lrem(queue.key, 1, job.id)  # a worker took it: it is running
    worker = build_worker(settings, connection=redis_conn)
    try:
        with pytest.raises(FailureNotRecordedError):
            worker.handle_job_failure(job, queue, exc_string="a handler raised")
    finally:
        redis_conn.config_set("maxmemory", 0)
    assert redis_conn.hget(job.key, "status") == b"scheduled"  # RQ's write outside the transaction
    assert job.id not in queue.scheduled_job_registry  # the transaction's, refused


def test_a_job_rq_drops_from_the_started_registry_is_queued_again_by_the_sweep(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    """The loss: status no longer STARTED, so RQ's abandoned-job cleanup drops the entry and retries nothing."""
    queue, job_id = orphaned(settings, redis_conn)
    redis_conn.zadd(queue.started_job_registry.key, {f"{job_id}:dead-execution": 1})  # its heartbeat long gone
    redis_conn.hset(f"rq:job:{job_id}", "status", "scheduled")  # as the refused failure record left it
    worker = build_worker(settings, connection=redis_conn)
    worker.clean_registries()
    assert redis_conn.zcard(queue.started_job_registry.key) == 0  # RQ dropped it: in no list or registry now
    assert rescue_orphans(queue, now=1000.0) == []
    assert rescue_orphans(queue, now=1000.0 + ORPHAN_GRACE) == [job_id]
    assert queue.get_job_ids() == [job_id]


def test_a_try_that_met_a_refused_write_is_retried_without_spending_a_retry(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    queue = queue_of(settings, redis_conn)
    job = queue.fetch_job(enqueue(settings, redis_conn, "categorization").delivery_id)
    assert job is not None
    before = job.retries_left
    worker: CallbackWorker = build_worker(settings, connection=redis_conn)
    worker.horse_write_refused = True  # as handle_work_horse_killed notes an exit with WRITE_REFUSED_EXIT
    worker.handle_job_failure(job, queue, exc_string="Work-horse terminated unexpectedly; waitpid returned 19200")
    job.refresh()
    assert job.retries_left == before and not worker.horse_write_refused
    assert job.id in queue.scheduled_job_registry or job.id in queue.get_job_ids()
    worker.handle_job_failure(job, queue, exc_string="a handler raised")  # the handler's own failure: spent
    job.refresh()
    assert job.retries_left == before - 1

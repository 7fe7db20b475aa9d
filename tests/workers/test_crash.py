"""Real worker processes on a real Redis: killed, stuck, poisoned, and Redis restarted or full.

Each test ends with every job done or visibly failed, never stuck. Intervals are short
(heartbeat and maintenance every second, retries at once); RQ's own 60 s margin on a dead
worker's heartbeat cannot be shortened, so the tests that kill a whole worker wait about a minute.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import redis
from click.testing import CliRunner
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from callback_server.cli import cli
from callback_server.config import Settings
from callback_server.defaults import HANDLER_KILL_GRACE
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.embedded import RedisProcess
from callback_server.jobs import failure_text
from callback_server.ledger import Ledger
from tests.support.fixtures import load_fixture
from tests.support.handlers import effects
from tests.support.jobs import enqueue
from tests.support.keys import LIVE_KEY
from tests.support.processes import child_env, kill_tree, process, stack_env, wait_for, worker_args
from workers.effects import effects_key

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Jobs enqueued with immediate retries, as the workers' HANDLER_RETRY_INTERVALS=0,0 says."""
    return replace(settings, handler_retry_intervals=(0, 0))


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    return stack_env(settings.redis_url, **extra)


def enqueue_copy(settings: Settings, conn: redis.Redis, name: str, task_id: str) -> str:
    """Queue a recorded callback as another task (a new delivery), through the real accept path."""
    body = load_fixture(name)
    body["task_id"] = body["task"]["task_id"] = task_id
    delivery = Delivery.from_body(body, mode="live")
    assert DeliveryQueue.from_settings(settings, conn).accept(delivery)
    return delivery.delivery_id


def queue_of(settings: Settings, conn: redis.Redis) -> Queue:
    return Queue(settings.callback_queue, connection=conn, serializer=JSONSerializer)


def statuses(settings: Settings, conn: redis.Redis, ids: list[str]) -> dict[str, str]:
    """Each job's RQ status; a finished job is deleted at once (RESULT_TTL 0), so the ledger says "finished"."""
    jobs = Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)
    book = Ledger(conn, ttl=settings.ledger_ttl)
    found = {}
    for job_id, job in zip(ids, jobs, strict=True):
        if job is not None:
            found[job_id] = job.get_status(refresh=False)
        else:
            entry = book.delivery(job_id)
            found[job_id] = "finished" if entry is not None and entry.state == "done" else "missing"
    return found


def assert_nothing_stuck(settings: Settings, conn: redis.Redis) -> None:
    """No job left on the queue, in RQ's intermediate list, or in the started, scheduled or deferred registry."""
    queue = queue_of(settings, conn)
    assert conn.llen(queue.key) == 0
    assert conn.llen(queue.intermediate_queue_key) == 0
    for registry in (queue.started_job_registry, queue.scheduled_job_registry, queue.deferred_job_registry):
        assert conn.zcard(registry.key) == 0, (registry.key, conn.zrange(registry.key, 0, -1))


def test_sigkill_of_the_worker_tree_at_any_moment_leaves_every_job_done_or_failed(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """Two kills at random moments of a busy pool, then one mid-handler: all 201 jobs end, none stuck.

    The last kill is deterministic: it lands while `second` of one delivery hangs, after `record`
    completed. RQ retries that delivery (within 2 minutes), `record` is skipped, `second` done once.
    """
    ids = [enqueue_copy(settings, redis_conn, "categorization", f"kill{i:03d}") for i in range(200)]
    hung = enqueue(settings, redis_conn, "annotation").delivery_id
    redis_conn.set(f"test:hang:second:{hung}", 1)
    ids.append(hung)
    env = worker_env(settings, WORKER_PROCESSES="2")
    log = tmp_path / "worker.log"
    rng = random.Random()
    for progress in (40, 120):
        with process(worker_args(), env, log) as proc:
            wait_for(
                lambda n=progress: len(effects(redis_conn, "test:started")) >= n,
                timeout=30,
                what="the pool to get going",
            )
            time.sleep(rng.uniform(0, 0.2))  # a random moment: mid-dequeue, mid-handler, mid-record
            kill_tree(proc)
    with process(worker_args(), env, log) as proc:
        wait_for(
            lambda: f"second:{hung}" in effects(redis_conn, "test:started"),
            timeout=30,
            what="the hanging handler to start",
        )
        kill_tree(proc)
    killed_at = time.monotonic()
    with process(worker_args(), env, log) as proc:
        wait_for(lambda: f"second:{hung}" in effects(redis_conn), timeout=150, what="the killed delivery's retry")
        retried_after = time.monotonic() - killed_at
        wait_for(
            lambda: set(statuses(settings, redis_conn, ids).values()) <= {"finished", "failed"},
            timeout=150,
            what="every job to end",
        )
        assert proc.poll() is None
    assert retried_after < 120, retried_after
    assert effects(redis_conn, "test:started").count(f"record:{hung}") == 1
    assert effects(redis_conn, "test:started").count(f"second:{hung}") == 2
    assert effects(redis_conn).count(f"second:{hung}") == 1
    done = {k.decode().rsplit(".", 1)[-1] for k in redis_conn.hkeys(effects_key(hung))}
    assert done == {"record", "second", "log_annotation"}
    assert_nothing_stuck(settings, redis_conn)
    final = statuses(settings, redis_conn, ids)
    failed = sorted(FailedJobRegistry(queue=queue_of(settings, redis_conn)).get_job_ids(cleanup=False))
    assert failed == sorted(job_id for job_id, status in final.items() if status == "failed")
    completed = effects(redis_conn)
    for job_id, status in final.items():
        if status == "finished":
            # At least once; twice only for a handler killed between its return and its record.
            assert 1 <= completed.count(f"record:{job_id}") <= 2
            assert 1 <= completed.count(f"second:{job_id}") <= 2
    assert len(completed) - 2 * len(ids) <= 4  # two processes, two random kills


@pytest.mark.parametrize("instruction", ["test:stuck_in_c:record", "test:swallow:record"])
def test_a_handler_that_ignores_its_timeout_is_killed_and_retried_never_run_twice_at_once(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path, instruction: str
) -> None:
    """Stuck in C with the GIL held (no Python signal handler can run), or swallowing the timeout."""
    timeout = 2
    redis_conn.set(instruction, 1)
    d = enqueue(replace(settings, handler_timeout=timeout), redis_conn, "comparison").delivery_id
    log = tmp_path / "worker.log"
    with process(worker_args(), worker_env(settings, WORKER_PROCESSES="2"), log) as proc:
        wait_for(lambda: f"record:{d}" in effects(redis_conn, "test:started"), what="the handler to start")
        first_start = time.monotonic()
        # The other worker keeps running maintenance meanwhile; nobody starts the delivery again
        # until the horse is killed.
        wait_for(
            lambda: effects(redis_conn, "test:started").count(f"record:{d}") == 2,
            timeout=30,
            what="the retry after the kill",
        )
        second_start = time.monotonic() - first_start
        wait_for(lambda: len(effects(redis_conn)) == 2, what="the retry to complete")
        assert proc.poll() is None
    assert timeout + HANDLER_KILL_GRACE - 0.5 <= second_start < timeout + HANDLER_KILL_GRACE + 5, second_start
    assert effects(redis_conn) == [f"record:{d}", f"second:{d}"]
    text = log.read_text()
    assert "Timeout (0:00:04)!" in text  # faulthandler's stack dump on the hard kill
    assert "the handler process ended without finishing" in text
    assert_nothing_stuck(settings, redis_conn)


def test_a_poison_job_fails_visibly_and_a_replay_gets_its_full_retries(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_conn.set("test:kill:record", 100)  # the handler SIGKILLs its own process, every time
    d = enqueue(settings, redis_conn, "transcription").delivery_id
    failed = FailedJobRegistry(queue=queue_of(settings, redis_conn))
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    with process(worker_args(), worker_env(settings), tmp_path / "worker.log") as proc:
        wait_for(lambda: d in failed.get_job_ids(cleanup=False), what="the job to fail")
        assert effects(redis_conn, "test:started").count(f"record:{d}") == 3  # one try and two retries
        job = queue_of(settings, redis_conn).fetch_job(d)
        assert job is not None and job.get_status() == "failed"
        assert "Work-horse terminated unexpectedly" in failure_text(job)
        assert "signal 9" in failure_text(job)
        listed = CliRunner().invoke(cli, ["failed", "list"])
        assert d in listed.output and "Work-horse terminated unexpectedly" in listed.output

        replayed = CliRunner().invoke(cli, ["failed", "replay", d])
        assert replayed.exit_code == 0, replayed.output
        assert f"{d}  requeued (3 tries)" in replayed.output
        wait_for(lambda: effects(redis_conn, "test:started").count(f"record:{d}") == 6, what="three more tries")
        wait_for(lambda: d in failed.get_job_ids(cleanup=False), what="the job to fail again")
        assert proc.poll() is None
    assert effects(redis_conn) == []
    assert_nothing_stuck(settings, redis_conn)


def test_a_redis_restart_mid_handler_repeats_no_handler_and_keeps_the_worker(
    settings: Settings, redis_conn: redis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    redis_conn.set("test:gate:record", str(gate))
    d = enqueue(settings, redis_conn, "categorization").delivery_id
    log = tmp_path / "worker.log"
    with process(worker_args(), worker_env(settings), log) as proc:
        wait_for(lambda: f"record:{d}" in effects(redis_conn), what="the handler to do its work")
        redis_server.stop()
        down_at, down_wall = time.monotonic(), time.time()
        gate.touch()  # `record` returns now, with Redis down
        wait_for(lambda: Path(f"{gate}.passed").exists(), what="the handler to return")
        time.sleep(1.0)  # the outage goes on while the completion waits to be recorded
        redis_server.start()
        down_for, up_wall = time.monotonic() - down_at, time.time()
        conn = redis.Redis.from_url(redis_server.url)
        wait_for(lambda: len(effects(conn)) == 2, timeout=30, what="the handlers to complete")
        wait_for(lambda: statuses(settings, conn, [d]) == {d: "finished"}, what="the job to finish")
        assert proc.poll() is None
    assert 1.0 < down_for < 4.0, down_for
    assert effects(conn, "test:started") == [f"record:{d}", f"second:{d}"]
    assert effects(conn) == [f"record:{d}", f"second:{d}"]
    # `record` returned while Redis was down; its completion was recorded once Redis was back.
    stamp = conn.hget(effects_key(d), "tests.workers.recording_handlers.record")
    assert stamp is not None
    # The stamp is cut to the millisecond: it may read up to 1 ms before the moment it was taken.
    assert down_wall - 0.001 < datetime.fromisoformat(stamp.decode()).timestamp() < up_wall
    assert "starting again" not in log.read_text()  # RQ's work loop itself never stopped
    assert_nothing_stuck(settings, conn)


def test_workers_ride_out_a_full_redis_and_process_the_backlog_once_it_has_room(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """Redis at maxmemory under noeviction refuses writes (OOM): a busy worker and a new one wait it out."""
    gate = tmp_path / "gate"
    redis_conn.set("test:gate:record", str(gate))
    first = enqueue(settings, redis_conn, "categorization").delivery_id
    running_log, new_log = tmp_path / "running.log", tmp_path / "new.log"
    try:
        with process(worker_args(), worker_env(settings), running_log) as running:
            wait_for(lambda: f"record:{first}" in effects(redis_conn), what="the first handler to do its work")
            redis_conn.delete("test:gate:record")
            backlog = [enqueue_copy(settings, redis_conn, "phonecall", f"full{i}") for i in range(3)]
            redis_conn.config_set("maxmemory", 1)  # full: every write refused from now on
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                redis_conn.set("probe", 1)
            gate.touch()  # the handler returns: its completion waits for room
            with process(worker_args(), worker_env(settings), new_log) as new:
                wait_for(lambda: "OutOfMemoryError" in new_log.read_text(), what="the new worker to meet it")
                wait_for(
                    lambda: "OutOfMemoryError" in running_log.read_text(),
                    what="the running worker to meet the full Redis",
                )
                # Both stay up well past the ~10 s after which RQ's worker used to exit on its own.
                deadline = time.monotonic() + 12
                while time.monotonic() < deadline:
                    assert running.poll() is None and new.poll() is None
                    time.sleep(0.5)
                redis_conn.config_set("maxmemory", 0)
                ids = [first, *backlog]
                wait_for(
                    lambda: set(statuses(settings, redis_conn, ids).values()) == {"finished"},
                    timeout=60,
                    what="the backlog to be processed",
                )
                assert running.poll() is None and new.poll() is None
    finally:
        redis_conn.config_set("maxmemory", 0)
    assert "OutOfMemoryError while recording a handler's completion; retrying" in running_log.read_text()
    for d in ids:
        assert effects(redis_conn).count(f"record:{d}") == 1
        assert effects(redis_conn).count(f"second:{d}") == 1
    assert_nothing_stuck(settings, redis_conn)


def test_sigterm_lets_the_running_handler_finish(settings: Settings, redis_conn: redis.Redis, tmp_path: Path) -> None:
    redis_conn.set("test:sleep:record", 1.0)
    delivery = enqueue(settings, redis_conn, "categorization")
    d = delivery.delivery_id
    with process(worker_args("--no-scheduler"), worker_env(settings), tmp_path / "worker.log") as proc:
        wait_for(lambda: f"record:{d}" in effects(redis_conn, "test:started"), what="the handler to start")
        proc.send_signal(signal.SIGTERM)  # the worker process only: its horse finishes the job
        assert proc.wait(timeout=15) == 0
    assert effects(redis_conn) == [f"record:{d}", f"second:{d}"]


def test_sigterm_to_every_process_as_heroku_sends_it_lets_the_running_handler_finish(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """Heroku signals every process of the dyno, the work horse too (it left the process group)."""
    redis_conn.set("test:sleep:record", 2.0)
    delivery = enqueue(settings, redis_conn, "categorization")
    d = delivery.delivery_id
    with process(worker_args("--no-scheduler"), worker_env(settings), tmp_path / "worker.log") as proc:
        wait_for(lambda: f"record:{d}" in effects(redis_conn, "test:started"), what="the handler to start")
        family = [proc.pid, *(child.pid for child in psutil.Process(proc.pid).children(recursive=True))]
        assert len(family) >= 2, "the work horse runs the handler"
        for pid in family:
            os.kill(pid, signal.SIGTERM)
        assert proc.wait(timeout=25) == 0  # within Heroku's 30 s before SIGKILL
    assert effects(redis_conn) == [f"record:{d}", f"second:{d}"]  # finished, not cut off and retried
    assert statuses(settings, redis_conn, [d]) == {d: "finished"}
    assert "terminated unexpectedly" not in (tmp_path / "worker.log").read_text()


def test_worker_with_bad_callback_handlers_stops_with_a_clear_message(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    env = worker_env(settings, CALLBACK_HANDLERS="myapp.no_such_handlers")
    log = tmp_path / "worker.log"
    with process(worker_args("--burst"), env, log) as proc:
        code = proc.wait(timeout=30)
    assert code != 0
    assert "CALLBACK_HANDLERS: cannot import 'myapp.no_such_handlers'" in log.read_text()


def test_worker_without_redis_url_names_the_variable(tmp_path: Path) -> None:
    env = child_env(SCALE_CALLBACK_AUTH_KEY=LIVE_KEY)
    log = tmp_path / "worker.log"
    with process(worker_args("--burst"), env, log) as proc:
        assert proc.wait(timeout=30) != 0
    assert "REDIS_URL is not set" in log.read_text()


def test_worker_with_a_bad_heartbeat_names_the_variable(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with process(worker_args("--burst"), worker_env(settings, WORKER_HEARTBEAT="0.5"), log) as proc:
        assert proc.wait(timeout=30) != 0
    assert "WORKER_HEARTBEAT must be a whole number, got '0.5'" in log.read_text()


def test_delayed_retry_runs_through_rqs_scheduler(settings: Settings, redis_conn: redis.Redis, tmp_path: Path) -> None:
    redis_conn.set("test:fail:second", 1)
    delivery = enqueue(replace(settings, handler_retry_intervals=(1,)), redis_conn, "datacollection")
    env = worker_env(settings, HANDLER_RETRY_INTERVALS="1")
    with process(worker_args(), env, tmp_path / "worker.log"):  # the Procfile's line: scheduler included
        wait_for(lambda: len(effects(redis_conn)) == 2, timeout=30, what="the delayed retry to succeed")
    d = delivery.delivery_id
    assert effects(redis_conn) == [f"record:{d}", f"second:{d}"]
    assert effects(redis_conn, "test:started").count(f"second:{d}") == 2


def test_worker_rides_out_a_redis_restart_while_idle(
    settings: Settings, redis_conn: redis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    with process(worker_args(), worker_env(settings), log) as proc:
        wait_for(lambda: redis_conn.smembers("rq:workers"), what="the worker to register")
        redis_server.stop()
        wait_for(lambda: "could not connect to Redis" in log.read_text(), what="the worker to notice")
        redis_server.start()
        conn = redis.Redis.from_url(redis_server.url)
        delivery = enqueue(settings, conn, "comparison")
        wait_for(lambda: len(effects(conn)) == 2, timeout=30, what="the delivery after the restart")
        assert proc.poll() is None
    d = delivery.delivery_id
    assert effects(conn) == [f"record:{d}", f"second:{d}"]

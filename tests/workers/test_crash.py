"""Real worker processes: SIGKILL mid-handler, restart, and the effect happens exactly once."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from callback_server.config import Settings
from callback_server.embedded import RedisProcess
from tests.conftest import LIVE_KEY
from tests.processes import child_env, process, stack_env, wait_for, worker_args
from tests.workers.conftest import effects, enqueue
from workers.effects import effects_key

pytestmark = pytest.mark.slow

HEARTBEAT = 0.3
"""A short lease (1 s) so the test waits seconds, not the production 25 s."""


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    return stack_env(settings.redis_url, **{"WORKER_HEARTBEAT": str(HEARTBEAT), **extra})


def test_sigkill_mid_handler_reruns_it_after_restart_exactly_once(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    redis_conn.set("test:hang:record", 1)  # the first run of `record` hangs until it is killed
    delivery = enqueue(settings, redis_conn, "annotation")
    d = delivery.delivery_id
    env = worker_env(settings)
    log = tmp_path / "worker.log"
    with process(worker_args("--no-scheduler"), env, log) as first:
        wait_for(lambda: f"record:{d}" in effects(redis_conn, "test:started"), what="the handler to start")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert effects(redis_conn) == []
    killed_at = time.monotonic()
    with process(worker_args("--no-scheduler"), env, log):
        wait_for(lambda: len(effects(redis_conn)) == 2, timeout=30, what="the handlers to complete after restart")
        recovered_after = time.monotonic() - killed_at
    assert effects(redis_conn) == [f"record:{d}", f"second:{d}"]
    assert effects(redis_conn, "test:started") == [f"record:{d}", f"record:{d}", f"second:{d}"]
    done = {k.decode().rsplit(".", 1)[-1] for k in redis_conn.hkeys(effects_key(d))}
    assert done == {"record", "second", "log_annotation"}
    # Recovery costs no retry: the job was requeued, not failed.
    assert "recovered a job whose worker died" in log.read_text()
    # Bounded: lease (3 heartbeats) + maintenance (2 heartbeats) + process start-up.
    assert recovered_after < 15, recovered_after


def test_sigterm_lets_the_running_handler_finish(
    settings: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    delivery = enqueue(settings, redis_conn, "categorization")
    env = worker_env(settings)
    with process(worker_args("--no-scheduler"), env, tmp_path / "worker.log") as proc:
        wait_for(lambda: len(effects(redis_conn)) == 2, what="the delivery to be processed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert effects(redis_conn) == [f"record:{delivery.delivery_id}", f"second:{delivery.delivery_id}"]


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


def test_delayed_retry_runs_through_rqs_scheduler(settings: Settings, redis_conn: redis.Redis, tmp_path: Path) -> None:
    redis_conn.set("test:fail:second", 1)
    delivery = enqueue(replace(settings, retry_intervals=(1,)), redis_conn, "datacollection")
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

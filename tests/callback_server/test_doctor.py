"""``doctor``: a healthy local stack passes; each misconfiguration fails its own line with its own advice."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from callback_server.config import Secret, Settings
from callback_server.doctor import FAIL, OK, WARN, Check, check_probe, check_scale_api, check_workers, run_doctor
from callback_server.embedded import RedisProcess, free_port
from callback_server.reconcile import build_reconciler
from scale_sim.config import Secret as SimSecret
from scale_sim.config import SimSettings
from scale_sim.server import SimServer
from tests.support.keys import LIVE_KEY, TEST_KEY
from tests.support.processes import gunicorn, process, run_cli, stack_env, wait_for, worker_args
from workers.registry import registry

API_KEY = "live_doctor_simulator_key_4c2e"

# What the worker's test handlers record (tests/workers/*_handlers.py). Named here, not imported:
# importing those modules would register their handlers in this process too.
STARTED, EFFECTS, SEEN = "test:started", "test:effects", "test:events"


@pytest.fixture(autouse=True)
def registrations() -> Iterator[None]:
    """Doctor imports CALLBACK_HANDLERS in this process: what they register is removed after each test, or
    a later test that loads the recording handlers for a while would find them registered already."""
    importlib.import_module("workers.handlers")  # the examples stay registered, as the worker fixtures expect
    saved = registry.snapshot()
    yield
    registry.restore(saved)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimServer]:
    settings = SimSettings(
        callback_auth_key=SimSecret(LIVE_KEY),
        completion_delay=10**6,
        default_callback_url="http://127.0.0.1:9/callback",
        data_path=str(tmp_path / "sim.db"),
    )
    with SimServer(settings, start_scheduler=False) as server:
        yield server


def doctor_env(redis_url: str, sim: SimServer, **overrides: str) -> dict[str, str]:
    return stack_env(
        redis_url,
        SCALE_API_URL=sim.api_url,
        SCALE_API_KEY=API_KEY,
        SCALE_TEST_CALLBACK_AUTH_KEY=TEST_KEY,
        CALLBACK_HANDLERS="tests.workers.recording_handlers,tests.workers.event_handlers",
        **overrides,
    )


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def scheduled_run(env: dict[str, str], conn: redis.Redis) -> None:
    """What the clock does every RECONCILE_INTERVAL, once."""
    settings = Settings.from_env(env)
    reconciler = build_reconciler(settings, conn)
    try:
        assert reconciler.run_scheduled().complete
    finally:
        reconciler.close()


def leftovers(conn: redis.Redis) -> list[bytes]:
    """Every key but the ones a running stack keeps for itself (RQ's workers and queues, counters, the run log)."""
    ignored = (
        b"rq:worker",
        b"rq:workers",
        b"rq:queues",
        b"rq:queue:",
        b"rq:scheduler",
        b"rq:wip:",
        b"rq:finished:",
        b"rq:started:",
        b"rq:deferred:",
        b"rq:scheduled:",
        b"rq:failed:",
        b"rq:canceled:",
        b"rq:executions",
        b"scb:stats:",
        b"scb:reconcile:",
        b"scb:handler_names",
        b"rq:clean_registries",
        b"rq:intermediate",
    )
    return sorted(key for key in conn.keys("*") if not key.startswith(ignored))


@pytest.mark.slow
def test_a_healthy_stack_passes_the_probe_reaches_no_handler_and_leaves_nothing(
    sim: SimServer, redis_server: RedisProcess, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    env = doctor_env(redis_server.url, sim)
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    with gunicorn(env, free_port(), web_log) as base, process(worker_args(), env, worker_log) as worker:
        settings = Settings.from_env(env)
        wait_for(lambda: check_workers(settings, redis_conn).status == OK, timeout=30, what="the worker to register")
        scheduled_run(env, redis_conn)
        before = leftovers(redis_conn)
        done = run_cli(env, "doctor", "--url", f"{base}/callback")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert [line.split()[0] for line in lines] == [OK] * len(lines), done.stdout
        for name in (
            "configuration",
            "callback keys",
            "handlers",
            "redis",
            "redis eviction",
            "redis memory",
            "redis persistence",
            "redis tls",
            "scale api",
            "workers",
            "clock",
            "probe",
        ):
            assert any(line[6:].startswith(f"{name}:") for line in lines), (name, done.stdout)
        assert f"all {len(lines)} checks passed" in done.stderr
        for secret in (LIVE_KEY, TEST_KEY, API_KEY):
            assert secret not in done.stdout + done.stderr

        # The probe went the whole way: the receiver logged it as a test delivery, a worker processed it...
        ack = next(line for line in web_log.read_text().splitlines() if "scb_probe" in line)
        assert "mode=test" in ack and "queued" in ack
        wait_for(lambda: "probe processed" in worker_log.read_text(), what="the worker's probe line")
        # ...no handler ran (not the "*" ones either), and nothing of it is left but log lines.
        assert redis_conn.lrange(STARTED, 0, -1) == [] and redis_conn.lrange(EFFECTS, 0, -1) == []
        assert redis_conn.lrange(SEEN, 0, -1) == []
        wait_for(lambda: redis_conn.llen("rq:queue:callbacks") == 0, what="the queue to drain")
        wait_for(lambda: leftovers(redis_conn) == before, timeout=10, what="the probe's job to be gone")
        assert not any(b"scb_probe" in field for field in redis_conn.hkeys("scb:stats:total"))

        # The URL's receiver runs with another test key: the probe line says so.
        other_key = replace(settings, test_keys=(Secret("another-test-key-000000"),))
        refused = check_probe(other_key, redis_conn, f"{base}/callback", 5)
        assert refused.status == FAIL and "refused the test key (401)" in refused.found
        assert "SCALE_TEST_CALLBACK_AUTH_KEY" in refused.advice

        # No worker: its own line, and a probe nobody processes.
        worker.terminate()
        assert worker.wait(timeout=30) == 0
        wait_for(lambda: check_workers(settings, redis_conn).status == FAIL, timeout=10, what="the worker to leave")
        gone = check_workers(settings, redis_conn)
        assert "no worker listens" in gone.found and "heroku ps:scale worker=1" in gone.advice
        stuck = check_probe(settings, redis_conn, f"{base}/callback", 2)
        assert stuck.status == FAIL and "no worker processed it within 2 s" in stuck.found


def test_an_unreachable_url_fails_the_probe_line(settings: Settings, redis_conn: redis.Redis) -> None:
    url = f"http://127.0.0.1:{free_port()}/callback"
    check = check_probe(settings, redis_conn, url, 2)
    assert check.status == FAIL and f"{url} unreachable" in check.found
    assert "web dynos" in check.advice
    assert check_probe(settings, redis_conn, "ftp://example/callback", 2).found.endswith("is not an http(s) URL")
    no_test_key = check_probe(replace(settings, test_keys=()), redis_conn, url, 2)
    assert "SCALE_TEST_CALLBACK_AUTH_KEY is not set" in no_test_key.found


def test_a_wrong_api_key_fails_the_scale_api_line_without_showing_it(sim: SimServer, settings: Settings) -> None:
    good = check_scale_api(replace(settings, scale_api_url=sim.api_url, scale_api_key=Secret(API_KEY)))
    assert good.status == OK, good.line()
    bad_key = "not-a-scale-key-91ab"
    bad = check_scale_api(replace(settings, scale_api_url=sim.api_url, scale_api_key=Secret(bad_key)))
    assert bad.status == FAIL and "Scale refused SCALE_API_KEY" in bad.found and "HTTP 401" in bad.found
    assert "live API key" in bad.advice and bad_key not in bad.line()
    missing = check_scale_api(replace(settings, scale_api_key=None))
    assert missing.status == FAIL and "SCALE_API_KEY is not set" in missing.found


def test_each_redis_misconfiguration_fails_its_own_line(
    sim: SimServer, redis_server: RedisProcess, redis_conn: redis.Redis
) -> None:
    env = doctor_env(redis_server.url, sim)
    scheduled_run(env, redis_conn)
    healthy = by_name(run_doctor(env))
    assert all(
        healthy[name].status == OK
        for name in ("redis", "redis eviction", "redis memory", "redis persistence", "redis tls", "scale api", "clock")
    )
    assert healthy["workers"].status == FAIL  # none runs in this test
    assert "probe" not in healthy  # only with --url
    try:
        redis_conn.config_set("maxmemory-policy", "allkeys-lru")
        evicting = by_name(run_doctor(env))
        assert evicting["redis eviction"].status == FAIL
        assert "allkeys-lru" in evicting["redis eviction"].found
        assert "noeviction" in evicting["redis eviction"].advice
        assert evicting["redis persistence"].status == OK
    finally:
        redis_conn.config_set("maxmemory-policy", "noeviction")
    try:
        redis_conn.config_set("appendonly", "no")
        redis_conn.config_set("save", "")
        volatile = by_name(run_doctor(env))
        assert volatile["redis persistence"].status == FAIL
        assert "neither AOF nor RDB" in volatile["redis persistence"].found
        assert "appendonly" in volatile["redis persistence"].advice
        assert volatile["redis eviction"].status == OK
        redis_conn.config_set("save", "3600 1")
        assert by_name(run_doctor(env))["redis persistence"].status == OK
    finally:
        redis_conn.config_set("save", "")
        redis_conn.config_set("appendonly", "yes")
    try:
        used = int(redis_conn.info("memory")["used_memory"])
        redis_conn.config_set("maxmemory", str(int(used * 1.1) + 4096))
        full = by_name(run_doctor(env))["redis memory"]
        assert full.status == WARN and "503" in full.advice
    finally:
        redis_conn.config_set("maxmemory", "0")
    assert healthy["redis connections"].status == OK
    assert " of 10000 open" in healthy["redis connections"].found
    assert "at most 4 (2 x REDIS_POOL_SIZE)" in healthy["redis connections"].found
    held = [redis.Redis.from_url(redis_server.url) for _ in range(8)]
    try:
        for client in held:
            client.ping()  # each holds its connection open
        limit = int(redis_conn.info("clients")["connected_clients"]) + 3  # room for doctor's own, no more
        redis_conn.config_set("maxclients", str(limit))
        crowded = by_name(run_doctor(env))["redis connections"]
        assert crowded.status == WARN and f" of {limit} open" in crowded.found, crowded
        assert "REDIS_POOL_SIZE" in crowded.advice
    finally:
        redis_conn.config_set("maxclients", "10000")
        for client in held:
            client.close()


def test_a_clock_that_never_ran_and_a_redis_that_is_down_each_say_so(
    sim: SimServer, redis_server: RedisProcess, redis_conn: redis.Redis
) -> None:
    env = doctor_env(redis_server.url, sim)
    clock = by_name(run_doctor(env))["clock"]
    assert clock.status == FAIL and "no scheduled reconciliation" in clock.found and "clock=1" in clock.advice
    down = by_name(
        run_doctor(
            {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_TIMEOUT": "0.2"},
            url="http://127.0.0.1:9/callback",
        )
    )
    assert down["redis"].status == FAIL and "REDIS_URL" in down["redis"].advice
    assert down["probe"].status == FAIL and "Redis is unreachable" in down["probe"].found
    assert "workers" not in down


def test_a_bad_variable_is_the_only_line(redis_server: RedisProcess) -> None:
    checks = run_doctor({"REDIS_URL": redis_server.url, "SCALE_CALLBACK_AUTH_KEY": LIVE_KEY, "DEDUP_TTL": "soon"})
    assert [(c.name, c.status) for c in checks] == [("configuration", FAIL)]
    assert "DEDUP_TTL must be a whole number" in checks[0].found
    missing = run_doctor({"REDIS_URL": redis_server.url})
    assert "SCALE_CALLBACK_AUTH_KEY is not set" in missing[0].found


def test_a_handler_module_that_does_not_import_fails_the_handlers_line(redis_server: RedisProcess) -> None:
    env = {"REDIS_URL": redis_server.url, "SCALE_CALLBACK_AUTH_KEY": LIVE_KEY}
    healthy = by_name(run_doctor(env))["handlers"]
    assert healthy.status == OK and "from workers.handlers" in healthy.found
    env["CALLBACK_HANDLERS"] = "workers.handlers,tests.workers.broken_handlers"
    broken = by_name(run_doctor(env))["handlers"]
    assert broken.status == FAIL
    assert "cannot import 'tests.workers.broken_handlers': ZeroDivisionError" in broken.found
    assert "python -m callback_server handlers" in broken.advice


def test_a_test_key_that_is_also_live_fails_the_keys_line(redis_server: RedisProcess) -> None:
    env = {"REDIS_URL": redis_server.url, "SCALE_CALLBACK_AUTH_KEY": LIVE_KEY, "SCALE_TEST_CALLBACK_AUTH_KEY": LIVE_KEY}
    keys = by_name(run_doctor(env))["callback keys"]
    assert keys.status == FAIL and "both live and test" in keys.found


def test_a_url_that_is_not_a_receiver_fails_with_what_it_answered(settings: Settings, redis_conn: redis.Redis) -> None:
    with SimServer(SimSettings(data_path=":memory:"), start_scheduler=False) as other:
        check = check_probe(settings, redis_conn, f"{other.url}/callback", 2)
    assert check.status == FAIL and "answered 404" in check.found and "/callback" in check.advice

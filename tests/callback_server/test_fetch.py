"""``fetch``: a task whose callback was dropped, asked of the simulator's API and put through the accept path."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from callback_server.config import Secret, Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.embedded import RedisProcess, free_port
from callback_server.exceptions import ConfigError
from callback_server.fetch import FETCH, fetch_tasks
from callback_server.ledger import Ledger
from tests.support.jobs import queued_jobs
from tests.support.processes import run_cli, stack_env
from tests.support.sims import Sim, dropping_sim

API_KEY = "live_fetch_simulator_key_7f3a9c"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    with dropping_sim(tmp_path, API_KEY) as simulator:
        yield simulator


@pytest.fixture
def fetch_settings(settings: Settings, sim: Sim) -> Settings:
    return replace(settings, scale_api_url=sim.server.api_url, scale_api_key=Secret(API_KEY))


def test_a_dropped_callback_is_queued_once_then_already_had(
    sim: Sim, fetch_settings: Settings, redis_conn: redis.Redis
) -> None:
    task_id = sim.create()
    sim.complete(task_id)
    assert queued_jobs(redis_conn) == []  # the simulator dropped the callback

    [first] = fetch_tasks(fetch_settings, redis_conn, [task_id])
    assert (first.outcome, first.event) == ("queued", "completed")
    assert len(queued_jobs(redis_conn)) == 1
    [entry] = Ledger(redis_conn, fetch_settings.ledger_ttl).deliveries_of_task(task_id)
    assert (entry.source, entry.delivery_id) == (FETCH, first.delivery_id)

    [again] = fetch_tasks(fetch_settings, redis_conn, [task_id])
    assert (again.outcome, again.delivery_id) == ("duplicate", first.delivery_id)
    assert len(queued_jobs(redis_conn)) == 1


def test_a_task_whose_callback_arrived_is_already_had(
    sim: Sim, fetch_settings: Settings, redis_conn: redis.Redis
) -> None:
    task_id = sim.create()
    task = sim.complete(task_id)
    body = {"task_id": task_id, "status": task["status"], "response": task["response"], "task": task}
    assert DeliveryQueue.from_settings(fetch_settings, redis_conn).accept(Delivery.from_body(body, mode="live"))
    [result] = fetch_tasks(fetch_settings, redis_conn, [task_id])
    assert result.outcome == "duplicate"
    assert len(queued_jobs(redis_conn)) == 1


def test_unknown_pending_and_malformed_ids_each_say_so_in_order(
    sim: Sim, fetch_settings: Settings, redis_conn: redis.Redis
) -> None:
    pending = sim.create()
    results = fetch_tasks(fetch_settings, redis_conn, ["0123456789abcdef01234567", pending, "a\x1bb", ""])
    assert [r.outcome for r in results] == ["not found", "skipped", "invalid id", "invalid id"]
    assert results[0].failed and not results[1].failed
    assert "no event yet" in results[1].line()
    assert "\x1b" not in results[2].line() and "\\x1b" in results[2].line()
    assert queued_jobs(redis_conn) == []


@pytest.mark.parametrize("task_id", ["..", ".", "a/../../x", "x?limit=100", "%2e%2e", "a#b", "tasks/../task"])
def test_an_id_that_would_reach_another_api_path_is_refused_before_any_request(
    settings: Settings, redis_conn: redis.Redis, task_id: str
) -> None:
    nowhere = replace(settings, scale_api_url=f"http://127.0.0.1:{free_port()}/v1", scale_api_key=Secret("live_k"))
    [result] = fetch_tasks(nowhere, redis_conn, [task_id])  # a request would have ended in "error"
    assert result.outcome == "invalid id" and "only letters, digits" in result.detail
    assert redis_conn.zcard("scb:quarantine") == 0


def test_without_an_api_key_fetch_names_the_variable(settings: Settings, redis_conn: redis.Redis) -> None:
    with pytest.raises(ConfigError, match="SCALE_API_KEY is not set"):
        fetch_tasks(settings, redis_conn, ["abc"])


def fetch_cli(env: dict[str, str], *task_ids: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "fetch", *task_ids, timeout=60)


@pytest.mark.slow
def test_the_command_prints_each_outcome_and_never_the_api_key(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis
) -> None:
    task_id = sim.create()
    sim.complete(task_id)
    env = stack_env(redis_server.url, SCALE_API_URL=sim.server.api_url, SCALE_API_KEY=API_KEY)
    first = fetch_cli(env, task_id, "0123456789abcdef01234567")
    assert first.returncode == 1  # one was not found
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"{task_id}  queued  completed  delivery ")
    assert lines[1].startswith("0123456789abcdef01234567  not found")
    again = fetch_cli(env, task_id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith(f"{task_id}  already had  completed")
    assert len(queued_jobs(redis_conn)) == 1

    # A key the API refuses: the answer says so, stops the other lookups, and never shows the key.
    bad_key = "not-a-scale-key-5b1e0d"
    refused = fetch_cli({**env, "SCALE_API_KEY": bad_key}, task_id, "other")
    assert refused.returncode == 1
    assert [line.split("  ")[1] for line in refused.stdout.splitlines()] == ["error", "error"]
    assert "HTTP 401" in refused.stdout
    for run in (first, again, refused):
        assert API_KEY not in run.stdout + run.stderr
        assert bad_key not in run.stdout + run.stderr

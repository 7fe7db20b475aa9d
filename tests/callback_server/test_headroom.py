"""Redis memory headroom: the web processes warn when Redis passes 80 % of maxmemory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from callback_server.connection import memory, memory_is_high, warn_if_memory_high
from tests.support.fixtures import load_fixture
from tests.support.http import post
from tests.support.processes import wait_for


@pytest.fixture
def tight_redis(redis_conn: redis.Redis) -> Iterator[redis.Redis]:
    """The private Redis with maxmemory just above what it uses (restored afterwards)."""
    used, _ = memory(redis_conn)
    redis_conn.config_set("maxmemory", int(used * 1.1))
    try:
        yield redis_conn
    finally:
        redis_conn.config_set("maxmemory", 0)


def test_memory_is_high_past_80_percent_of_a_limit() -> None:
    assert memory_is_high(81, 100)
    assert not memory_is_high(80, 100)
    assert not memory_is_high(10**9, 0)  # no limit set


def test_no_warning_without_a_limit(redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    assert not warn_if_memory_high(redis_conn)
    assert "REDIS MEMORY HIGH" not in caplog.text


def test_a_web_process_warns_of_high_memory(
    tight_redis: redis.Redis, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert warn_if_memory_high(tight_redis)
    caplog.clear()
    post(client, load_fixture("categorization"))  # starts the process's background flush, which checks
    wait_for(lambda: "REDIS MEMORY HIGH" in caplog.text, timeout=10, what="the headroom warning")
    assert "see docs/capacity.md" in caplog.text

"""The one status snapshot: workers by one rule, memory against maxmemory, counts as the stores count."""

from __future__ import annotations

import time

import redis
from rq.worker import Worker

from callback_server.config import Settings
from callback_server.quarantine import Quarantine
from callback_server.status import read_status


def test_workers_are_live_while_their_key_exists(redis_conn: redis.Redis, settings: Settings) -> None:
    Worker([settings.callback_queue], connection=redis_conn, name="w-live").register_birth()
    dead = Worker([settings.callback_queue], connection=redis_conn, name="w-dead")
    dead.register_birth()
    redis_conn.delete(dead.key)
    Worker(["another-queue"], connection=redis_conn, name="w-other").register_birth()
    status = read_status(redis_conn, settings)
    assert (status.workers, status.workers_lapsed) == (1, 1)
    # Reading the status cleans nothing: the dead worker's name stays for the console to show.
    assert redis_conn.sismember(f"rq:workers:{settings.callback_queue}", dead.key)


def test_memory_is_high_past_the_headroom_warning(redis_conn: redis.Redis, settings: Settings) -> None:
    assert not read_status(redis_conn, settings).memory_high  # no limit: never high
    used = int(redis_conn.info("memory")["used_memory"])
    redis_conn.config_set("maxmemory", str(used * 10))
    try:
        roomy = read_status(redis_conn, settings)
        redis_conn.config_set("maxmemory", str(int(used / 0.9)))
        tight = read_status(redis_conn, settings)
    finally:
        redis_conn.config_set("maxmemory", "0")
    assert not roomy.memory_high and tight.memory_high
    assert tight.memory_limit == int(used / 0.9) and tight.memory_policy == "noeviction" and not tight.evicts


def test_quarantine_count_leaves_out_entries_past_their_retention(redis_conn: redis.Redis, settings: Settings) -> None:
    Quarantine(redis_conn, ttl=settings.quarantine_ttl).keep(
        b"{", reason="body is not valid JSON", details=None, mode="live", content_type="application/json"
    )
    redis_conn.zadd("scb:quarantine", {"long-gone": time.time() - settings.quarantine_ttl - 60})
    status = read_status(redis_conn, settings)
    assert status.quarantined == 1 == Quarantine(redis_conn, ttl=settings.quarantine_ttl).count()
    assert status.depth == 0 and status.oldest_age is None

"""doctor's probe on the worker's side: its traces removed in a fixed number of commands, however busy the ledger."""

from __future__ import annotations

import redis

from callback_server import ledger
from callback_server.config import Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.probe import handle_probe, new_nonce, notice_key, probe_body


def commands(conn: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in conn.info("commandstats").items()}


def test_a_probe_is_cleaned_up_without_reading_the_ledger_however_busy_it_is(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    nonce = new_nonce()
    delivery = Delivery.from_body(probe_body(nonce), mode="test")
    queue = DeliveryQueue.from_settings(settings, redis_conn)
    assert queue.accept(delivery)
    stream = next(key for key in redis_conn.scan_iter(f"{ledger.PREFIX}:*") if redis_conn.type(key) == b"stream")
    with redis_conn.pipeline(transaction=False) as pipe:
        for n in range(20_000):  # a busy day's entries after the probe's, which the old cleanup read one by one
            pipe.xadd(stream, {"d": f"{n:016d}", "t": "busy"})
        pipe.execute()
    assert redis_conn.xlen(stream) == 20_001
    redis_conn.config_resetstat()
    handle_probe(redis_conn, delivery.as_job_arg())
    calls = commands(redis_conn)
    assert "xrange" not in calls and calls.get("xdel", 0) <= 2
    assert redis_conn.xlen(stream) == 20_000  # the probe's entry, and only it, is gone
    assert not queue.is_seen(delivery.delivery_id)
    assert redis_conn.lrange(notice_key(nonce), 0, -1) == [b"processed"]

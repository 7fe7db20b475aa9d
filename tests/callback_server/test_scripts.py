"""The Lua scripts, called through the packers beside their text, against a real Redis.

Each test calls a script the way its one caller does (``scripts.*_call``), so a position that
moves in the Lua but not in the packer, or the other way round, fails here first.
"""

from __future__ import annotations

import hashlib
import time

import redis

from callback_server import ledger, scripts, stats
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.probe import handle_probe, notice_key, probe_body
from tests.support.fixtures import load_fixture


def accept_with(queue: DeliveryQueue, delivery: Delivery) -> int:
    """One call of the accept script with a fixed clock, as DeliveryQueue.accept packs it."""
    now = 1_800_000_000.0
    period = int(now // ledger.PERIOD)
    keys, args = scripts.accept_call(
        seen=["scb:seen:h1", "scb:seen:h0"],
        job=f"rq:job:{delivery.delivery_id}",
        queue=queue.queue.key,
        queues="rq:queues",
        stream=ledger.stream_key(period),
        counters=stats.TOTAL_KEY,
        index=ledger.index_key(period),
        identity=ledger.raw_id(delivery.delivery_id),
        job_id=delivery.delivery_id,
        stamp="2027-01-15T08:00:00.000000Z",
        data=delivery.job_data(),
        description="a description",
        seen_expiry=int(now) + 3600,
        ledger_expiry=int(now) + 7200,
        task_id=delivery.task_id,
        type_code=ledger.type_code(delivery.task_type),
        event_code=ledger.event_code(delivery.event),
        source_code="c",
        mode_code="l",
        queued_field="delivery|queued|x",
        duplicate_field="delivery|duplicate|x",
        minute="scb:stats:m:1",
        tally=stats.as_args({"extra|field": 2.0}, {}),
    )
    script = queue._accept_script
    return int(queue.connection.eval(script, len(keys), *keys, *args))


def test_accept_writes_a_new_delivery_once_and_counts_a_duplicate(redis_conn: redis.Redis) -> None:
    queue = DeliveryQueue(redis_conn)
    delivery = Delivery.from_body(load_fixture("categorization"), mode="live")
    assert accept_with(queue, delivery) == 1
    job = redis_conn.hgetall(f"rq:job:{delivery.delivery_id}")
    assert job[b"created_at"] == job[b"enqueued_at"] == b"2027-01-15T08:00:00.000000Z"
    assert job[b"description"] == b"a description" and job[b"status"] == b"queued"
    assert redis_conn.lrange(queue.queue.key, 0, -1) == [delivery.delivery_id.encode()]
    assert redis_conn.smembers("rq:queues") == {queue.queue.key.encode()}
    identity = ledger.raw_id(delivery.delivery_id)
    assert redis_conn.hexists("scb:seen:h1", identity) and redis_conn.expiretime("scb:seen:h1") == 1_800_003_600
    (stream,) = redis_conn.keys("scb:ledger:*")
    ((_, fields),) = redis_conn.xrange(stream)
    assert fields[b"d"] == identity and fields[b"t"] == delivery.task_id.encode()
    assert (fields[b"s"], fields[b"m"]) == (b"c", b"l")
    assert redis_conn.expiretime(stream) == 1_800_007_200
    # A duplicate, even seen in the older period only, writes nothing but its count.
    redis_conn.rename("scb:seen:h1", "scb:seen:h0")
    assert accept_with(queue, delivery) == 0
    assert redis_conn.llen(queue.queue.key) == 1 and redis_conn.xlen(stream) == 1
    totals = redis_conn.hgetall(stats.TOTAL_KEY)
    assert totals[b"delivery|queued|x"] == b"1" and totals[b"delivery|duplicate|x"] == b"1"
    assert totals[b"extra|field"] == b"4"  # the tally rode along with both calls
    minute = redis_conn.hgetall("scb:stats:m:1")
    assert (minute[b"out|queued"], minute[b"out|duplicate"]) == (b"1", b"1")


def test_ledger_scan_pages_newest_first_and_filters_inside_redis(redis_conn: redis.Redis) -> None:
    stream = "scb:ledger:test"
    for n in range(7):
        redis_conn.xadd(stream, {"t": "wanted" if n % 2 else "other", "n": str(n)}, id=f"{1000 + n}-0")
    run = redis_conn.register_script(scripts.LEDGER_SCAN)
    found: list[bytes] = []
    start: str | bytes = "+"
    pages = 0
    while True:
        keys, args = scripts.ledger_scan_call(stream=stream, start=start, count=3, name="t", value="wanted")
        nxt, page = run(keys=keys, args=args)
        pages += 1
        found += [fields[fields.index(b"n") + 1] for _, fields in page]
        if not nxt:
            break
        start = nxt
    assert found == [b"5", b"3", b"1"] and pages == 3


def test_ledger_outcome_appends_and_indexes_the_entry(redis_conn: redis.Redis) -> None:
    identity = hashlib.sha256(b"x").digest()[:16]
    keys, args = scripts.ledger_outcome_call(
        stream="scb:ledger:1", index="scb:ledger_ix:1", expire_at=int(time.time()) + 60, delivery=identity,
        fields=["d", identity, "k", "done"],
    )  # fmt: skip
    first = redis_conn.eval(scripts.LEDGER_OUTCOME, len(keys), *keys, *args)
    second = redis_conn.eval(scripts.LEDGER_OUTCOME, len(keys), *keys, *args)
    assert redis_conn.hget("scb:ledger_ix:1", b"d:" + identity) == first + b"," + second
    assert redis_conn.hget("scb:ledger_ix:1", "since") == first
    assert redis_conn.ttl("scb:ledger:1") > 0 and redis_conn.ttl("scb:ledger_ix:1") > 0


def test_probe_cleanup_removes_every_trace_and_leaves_others(redis_conn: redis.Redis) -> None:
    queue = DeliveryQueue(redis_conn)
    other = Delivery.from_body(load_fixture("phonecall"), mode="live")
    assert queue.accept(other)
    nonce = "ab" * 16
    probe = Delivery.from_body(probe_body(nonce), mode="live")
    assert queue.accept(probe)
    handle_probe(redis_conn, probe.as_job_arg())
    assert redis_conn.lrange(notice_key(nonce), 0, -1) == [b"processed"]
    assert not queue.is_seen(probe.delivery_id) and queue.is_seen(other.delivery_id)
    entries = [fields[b"t"] for key in redis_conn.keys("scb:ledger:*") for _, fields in redis_conn.xrange(key)]
    assert entries == [other.task_id.encode()]
    index = {k for key in redis_conn.keys("scb:ledger_ix:*") for k in redis_conn.hkeys(key)}
    assert b"t:" + probe.task_id.encode() not in index and b"t:" + other.task_id.encode() in index
    counted = [k for k in redis_conn.hkeys(stats.TOTAL_KEY) if b"scb_probe" in k]
    assert counted == []

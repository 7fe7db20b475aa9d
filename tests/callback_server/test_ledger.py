"""The delivery ledger and the counters the accept script and the workers write, read back."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from callback_server import ledger, stats
from callback_server.embedded import RedisProcess
from callback_server.ledger import Ledger
from tests.support.connections import unreachable_redis
from tests.support.events import categorization_life
from tests.support.fixtures import load_fixture
from tests.support.http import post

SHIPPED_TYPE_CODES = "3e62cd4fdbe52da2"
"""sha256 (first 16 hex) of the first 27 ledger type codes, joined by commas, as first shipped."""


def test_each_accepted_delivery_gets_one_accept_entry(client: FlaskClient, redis_conn: redis.Redis) -> None:
    for _, body in categorization_life():
        post(client, body)
        post(client, body)  # a retry: no entry
    post(client, {"not": "a callback"})  # quarantined: no entry
    entries = Ledger(redis_conn, ttl=3 * 86400).recent()
    assert [(e.event, e.source, e.mode, e.state) for e in entries][::-1] == [
        ("completed", "callback", "live", "queued"),
        ("audit:accepted", "callback", "live", "queued"),
        ("audit:fixed", "callback", "live", "queued"),
        ("audit:rejected", "callback", "live", "queued"),
        ("recalled", "callback", "live", "queued"),
        ("completed", "callback", "live", "queued"),
    ]
    assert {e.task_id for e in entries} == {"576c41bf13e36b0600b02b34"}
    assert {e.type for e in entries} == {"categorization"}


def test_filters_search_and_a_delivery_with_its_attempts(
    client: FlaskClient, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "SCAN_BATCH", 3)  # several scan calls per stream
    for name in ("categorization", "annotation", "transcription", "phonecall"):
        post(client, load_fixture(name))
    for _, body in categorization_life()[1:4]:
        post(client, body)
    book = Ledger(redis_conn, ttl=3 * 86400)
    assert [e.type for e in book.recent(type="annotation")] == ["annotation"]
    assert len(book.recent(event="audit")) == 3
    assert [e.event for e in book.recent(event="audit:fixed")] == ["audit:fixed"]
    assert len(book.recent(limit=2)) == 2
    task_id = load_fixture("categorization")["task_id"]
    assert len(book.deliveries_of_task(task_id)) == 4
    assert book.deliveries_of_task("no-such-task") == []

    target = book.deliveries_of_task(task_id)[0]
    ledger.register_handlers(redis_conn, ["app.handlers.one", "app.handlers.two"])
    pipe = redis_conn.pipeline()
    ledger.record_outcome(
        pipe,
        86400,
        target.delivery_id,
        ledger.RETRYING,
        1,
        12.5,
        ["app.handlers.one"],
        {"app.handlers.two": "Traceback ...\nValueError: boom"},
    )
    ledger.record_outcome(pipe, 86400, target.delivery_id, ledger.DONE, 2, 3.0, ["app.handlers.two"])
    pipe.execute()
    found = book.delivery(target.delivery_id)
    assert found is not None and found.task_id == task_id and found.state == "done"
    assert [(a.number, a.outcome, a.handlers) for a in found.attempts] == [
        (1, "r", ["app.handlers.one"]),
        (2, "d", ["app.handlers.two"]),
    ]
    assert found.attempts[0].failures == {"app.handlers.two": "Traceback ...\nValueError: boom"}
    assert [e.state for e in book.recent(limit=10) if e.delivery_id == target.delivery_id] == ["done"]
    assert book.delivery("0" * 32) is None
    assert book.delivery("not hex") is None


def test_the_ledger_expires_ledger_ttl_after_its_bucket(
    client: FlaskClient, redis_conn: redis.Redis, app: Flask
) -> None:
    post(client, load_fixture("categorization"))
    (key,) = redis_conn.keys("scb:ledger:*")
    period = int(key.decode().rsplit(":", 1)[1])
    ttl = app.extensions["callback_server"].settings.ledger_ttl
    assert redis_conn.expiretime(key) == (period + 1) * ledger.PERIOD + ttl


def test_types_and_events_are_coded_and_read_back(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("unknown_type")  # segmentannotation is in the code table; make one that is not
    body["task"]["type"] = "hologramannotation"
    post(client, body)
    post(client, load_fixture("annotation"))
    ((_, fields),) = redis_conn.xrange(redis_conn.keys("scb:ledger:*")[0], count=1)
    assert fields[b"y"] == b"=hologramannotation" and fields[b"e"] == b"c"
    assert [e.type for e in Ledger(redis_conn, ttl=86400).recent()] == ["annotation", "hologramannotation"]
    # Append only, never reorder: stored entries name types by position (digest of the list as shipped).
    shipped = hashlib.sha256(",".join(ledger.TYPE_CODES[:27]).encode()).hexdigest()[:16]
    assert shipped == SHIPPED_TYPE_CODES, "ledger.TYPE_CODES changed order: old ledger entries would name wrong types"


def test_a_long_failure_keeps_only_the_end_of_its_traceback(redis_conn: redis.Redis) -> None:
    fields = ledger.outcome_fields("ab" * 16, ledger.FAILED, 3, 1.0, [], {"h": "x" * 10_000 + "END"})
    assert fields["t"] == ""  # an empty task id marks an outcome entry
    assert len(json.loads(fields["x"])["h"]) == ledger.TRACEBACK_LIMIT
    assert json.loads(fields["x"])["h"].endswith("END")


# --- counters ---------------------------------------------------------------------------------------


def test_counters_say_exactly_what_happened(client: FlaskClient, redis_conn: redis.Redis, app: Flask) -> None:
    body = load_fixture("categorization")
    post(client, body)
    post(client, body)
    post(client, b"{")
    post(client, load_fixture("annotation"))
    stats.flush(redis_conn, app.extensions["callback_server"].tally)
    counts = stats.totals(redis_conn)
    assert counts["delivery|queued|categorization|completed|live"] == 1
    assert counts["delivery|duplicate|categorization|completed|live"] == 1
    assert counts["delivery|queued|annotation|completed|live"] == 1
    assert counts["delivery|quarantined|-|-|live"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("ack_bucket|")) == 4
    assert "ack_count" not in counts  # the histogram's count is the sum of its buckets
    ((_, minute),) = stats.minutes(redis_conn, 1)
    assert (minute["out|queued"], minute["out|duplicate"], minute["out|quarantined"]) == (2, 1, 1)
    assert sum(v for k, v in minute.items() if k.startswith("ack|")) == 4


def test_503s_are_counted_once_redis_is_back(
    client: FlaskClient, redis_conn: redis.Redis, redis_server: RedisProcess, app: Flask
) -> None:
    redis_server.stop()
    try:
        assert post(client, load_fixture("categorization")).status_code == 503
    finally:
        redis_server.start()
    conn = redis.Redis.from_url(redis_server.url)
    assert post(client, load_fixture("annotation")).get_json() == {"status": "queued"}  # carries the 503 along
    stats.flush(conn, app.extensions["callback_server"].tally)
    counts = stats.totals(conn)
    assert counts["delivery|unavailable|-|-|live"] == 1
    assert counts["delivery|queued|annotation|completed|live"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("ack_bucket|")) == 1  # a 503 is not an ack


def test_quantiles_from_bucket_counts() -> None:
    counts = {"ack|1": 50.0, "ack|5": 45.0, "ack|100": 5.0}
    assert stats.quantile(counts, "ack", stats.ACK_BUCKETS_MS, 0.5) == 1
    assert stats.quantile(counts, "ack", stats.ACK_BUCKETS_MS, 0.99) == 100
    assert stats.quantile({}, "ack", stats.ACK_BUCKETS_MS, 0.5) is None


def test_a_tally_gives_back_what_a_failed_write_did_not_deliver(redis_server: RedisProcess) -> None:
    tally = stats.Tally()
    tally.add({"x": 1.0}, {"y": 2.0}, now=time.time())
    dead = unreachable_redis()
    with pytest.raises(redis.ConnectionError):
        stats.flush(dead, tally)
    assert tally
    stats.flush(redis.Redis.from_url(redis_server.url), tally)
    assert not tally


def commands(conn: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in conn.info("commandstats").items()}


def test_a_delivery_and_a_task_are_read_through_the_index_whatever_the_traffic(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    body = load_fixture("categorization")
    post(client, body)
    book = Ledger(redis_conn, ttl=3 * 86400)
    [accepted] = book.deliveries_of_task(body["task_id"])
    pipe = redis_conn.pipeline(transaction=False)
    ledger.record_outcome(pipe, 86400, accepted.delivery_id, ledger.DONE, 1, 2.0, ["app.h"])
    pipe.execute()
    stream = ledger.stream_key(int(time.time() // ledger.PERIOD))
    with redis_conn.pipeline(transaction=False) as fill:  # a busy day: 30,000 entries of other deliveries
        for n in range(30_000):
            fill.xadd(stream, {"d": n.to_bytes(16, "big"), "t": f"other-{n}", "y": "0", "e": "c", "s": "c", "m": "l"})
        fill.execute()
    redis_conn.config_resetstat()
    found = book.delivery(accepted.delivery_id)
    of_task = book.deliveries_of_task(body["task_id"])
    calls = commands(redis_conn)
    assert found is not None and found.task_id == body["task_id"] and [a.outcome for a in found.attempts] == ["d"]
    assert [e.delivery_id for e in of_task] == [accepted.delivery_id]
    assert "xrevrange" not in calls and "evalsha" not in calls  # no stream was scanned
    assert calls["xrange"] <= 2 * len(book._periods()) + 4  # a look per period, then the entries by id


def test_entries_written_before_the_index_are_still_found(redis_conn: redis.Redis) -> None:
    """A stream from before this version has no index: it is scanned, as before; a mixed one in part."""
    book = Ledger(redis_conn, ttl=3 * 86400)
    period = int(time.time() // ledger.PERIOD) - 1
    old = "ab" * 16
    redis_conn.xadd(
        ledger.stream_key(period), {"d": bytes.fromhex(old), "t": "old-task", "y": "0", "e": "c", "s": "c", "m": "l"}
    )
    assert book.delivery(old) is not None and [e.delivery_id for e in book.deliveries_of_task("old-task")] == [old]
    newer = "cd" * 16  # the index began after the old entry: it answers for the new one, a scan for the old
    redis_conn.xadd(
        ledger.stream_key(period), {"d": bytes.fromhex(newer), "t": "old-task", "y": "0", "e": "c", "s": "c", "m": "l"}
    )
    last = redis_conn.xrevrange(ledger.stream_key(period), count=1)[0][0]
    redis_conn.hset(
        ledger.index_key(period),
        mapping={"since": last, b"d:" + bytes.fromhex(newer): last, "t:old-task": bytes.fromhex(newer)},
    )
    assert {e.delivery_id for e in book.deliveries_of_task("old-task")} == {old, newer}
    assert book.delivery(old) is not None and book.delivery(newer) is not None

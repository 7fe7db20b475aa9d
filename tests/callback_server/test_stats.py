"""callback_server.stats: counter field names, histogram buckets and quantiles, the per-process Tally,
and the tally's packing as the accept script reads it, applied through a real Redis."""

from __future__ import annotations

import math
import threading
import time

import pytest
import redis

from callback_server import stats
from callback_server.schemas import REFERENCE_TYPES, SCALE_TYPES
from callback_server.scripts import APPLY_TALLY
from callback_server.stats import (
    ACK_BUCKETS_MS,
    HANDLER_BUCKETS_S,
    MINUTE_PREFIX,
    MINUTE_TTL,
    OTHER_TYPE,
    TOTAL_KEY,
    Tally,
    as_args,
    bucket,
    current_minute,
    field,
    minute_key,
    quantile,
    type_label,
)
from tests.support.connections import unreachable_redis

NOW = 1_750_000_000.0
"""A fixed Unix time: its minute is 29166666."""


# --- field names --------------------------------------------------------------------------------


def test_a_field_is_the_name_then_its_labels_joined_by_a_bar() -> None:
    assert field("delivery", "queued", "categorization", "completed", "live") == (
        "delivery|queued|categorization|completed|live"
    )
    assert field("ack_sum_ms") == "ack_sum_ms"
    assert field("ack", 7.5) == "ack|7.5" and field("job", None) == "job|None"


def test_the_stored_keys_keep_their_names() -> None:
    """Stored format: /metrics and the console read these keys, across releases."""
    assert TOTAL_KEY == "scb:stats:total"
    assert MINUTE_PREFIX == "scb:stats:m"
    assert minute_key(29_166_666) == "scb:stats:m:29166666"
    assert MINUTE_TTL == 25 * 3600


@pytest.mark.parametrize("task_type", sorted(SCALE_TYPES))
def test_a_type_scale_names_labels_itself(task_type: str) -> None:
    assert type_label(task_type) == task_type


@pytest.mark.parametrize("task_type", ["madeup", "", "Categorization", "categorization ", "other-type", "*"])
def test_any_other_type_is_labelled_other(task_type: str) -> None:
    assert type_label(task_type) == OTHER_TYPE == "other"


def test_every_increment_names_its_fields() -> None:
    assert set(REFERENCE_TYPES) <= SCALE_TYPES
    assert stats.outcome_counts("quarantined", "live") == (
        {"delivery|quarantined|-|-|live": 1.0},
        {"out|quarantined": 1.0},
    )
    assert stats.handler_run("myapp.store", "madeup", "failed", 0.3) == (
        {
            "handler_run|myapp.store|other|failed": 1.0,
            "handler_bucket|myapp.store|0.5": 1.0,
            "handler_sum_s|myapp.store": 0.3,
            "handler_count|myapp.store": 1.0,
        },
        {"run|failed": 1.0},
    )
    assert stats.job_outcome("retry") == ({"job|retry": 1.0}, {"job|retry": 1.0})
    assert stats.rerun_job_outcome("done") == ({"rerun_job|done": 1.0}, {})
    assert stats.unhandled("madeup", "audit") == ({"unhandled|other|audit": 1.0}, {})
    assert stats.unhandled("annotation", "completed") == ({"unhandled|annotation|completed": 1.0}, {})


def test_merge_adds_what_several_increments_share() -> None:
    merged = stats.merge(stats.job_outcome("done"), stats.job_outcome("done"), stats.rerun_job_outcome("done"))
    assert merged == ({"job|done": 2.0, "rerun_job|done": 1.0}, {"job|done": 2.0})
    assert stats.merge() == ({}, {})


# --- histograms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "slot"),
    [
        (0.0, "1"),
        (0.4, "1"),
        (1.0, "1"),  # a value on a bound counts in that bound's bucket ("le", as Prometheus)
        (1.0001, "2"),
        (7.5, "7.5"),
        (7.6, "10"),
        (4999.9, "5000"),
        (5000.0, "5000"),
        (5000.1, "+Inf"),
        (math.inf, "+Inf"),
    ],
)
def test_an_ack_latency_lands_in_the_first_bucket_whose_bound_it_does_not_exceed(value: float, slot: str) -> None:
    assert bucket(ACK_BUCKETS_MS, value) == slot
    total, minute = stats.ack_latency(value)
    assert total == {f"ack_bucket|{slot}": 1.0, "ack_sum_ms": value}
    assert minute == {f"ack|{slot}": 1.0}


@pytest.mark.parametrize(
    ("seconds", "slot"),
    [(0.0, "0.005"), (0.005, "0.005"), (0.0051, "0.01"), (1.0, "1"), (2.5, "2.5"), (600.0, "600"), (600.5, "+Inf")],
)
def test_a_handler_duration_lands_in_its_bucket(seconds: float, slot: str) -> None:
    assert bucket(HANDLER_BUCKETS_S, seconds) == slot
    assert stats.handler_run("h", "categorization", "done", seconds)[0][f"handler_bucket|h|{slot}"] == 1.0


def test_the_buckets_are_increasing_and_printed_without_trailing_zeros() -> None:
    for bounds in (ACK_BUCKETS_MS, HANDLER_BUCKETS_S):
        assert list(bounds) == sorted(set(bounds))
        slots = [bucket(bounds, b) for b in bounds]
        assert len(set(slots)) == len(bounds) and not any(s.endswith(".0") for s in slots)


def histogram(**per_bound: float) -> dict[str, float]:
    """An ack histogram's fields from counts by bound (``b7_5=3`` for 7.5, ``inf=1`` for +Inf)."""
    return {
        field("ack", "+Inf" if name == "inf" else f"{float(name[1:].replace('_', '.')):g}"): n
        for name, n in per_bound.items()
    }


def test_a_quantile_is_the_bound_of_the_bucket_that_reaches_it() -> None:
    counts = histogram(b1=10, b5=10)
    assert quantile(counts, "ack", ACK_BUCKETS_MS, 0.5) == 1
    assert quantile(counts, "ack", ACK_BUCKETS_MS, 0.51) == 5
    assert quantile(counts, "ack", ACK_BUCKETS_MS, 0.99) == 5
    assert quantile(counts, "ack", ACK_BUCKETS_MS, 1.0) == 5
    assert quantile(histogram(b7_5=1, b2500=99), "ack", ACK_BUCKETS_MS, 0.01) == 7.5


def test_a_quantile_past_the_last_bound_is_infinite_and_of_nothing_is_none() -> None:
    assert quantile(histogram(b1=1, inf=9), "ack", ACK_BUCKETS_MS, 0.5) == math.inf
    assert quantile({}, "ack", ACK_BUCKETS_MS, 0.5) is None
    assert quantile({"other|1": 5.0}, "ack", ACK_BUCKETS_MS, 0.5) is None  # another histogram's fields


# --- minutes ------------------------------------------------------------------------------------


def test_the_current_minute_is_unix_time_over_sixty() -> None:
    assert current_minute(NOW) == 29_166_666
    assert current_minute(120.0) == 2 and current_minute(119.999) == 1 and current_minute(0) == 0
    before = int(time.time() // 60)
    assert before <= current_minute() <= int(time.time() // 60)


# --- the tally ----------------------------------------------------------------------------------


def test_a_tally_adds_up_what_it_owes_by_minute() -> None:
    tally = Tally()
    assert not tally
    tally.add({"a": 1.0}, {"x": 1.0}, now=NOW)
    tally.add({"a": 2.5, "b": 1.0}, {"x": 1.0}, now=NOW + 1)
    tally.add({}, {"x": 1.0, "y": 4.0}, now=NOW + 60)
    assert tally
    total, minutes = tally.take()
    assert total == {"a": 3.5, "b": 1.0}
    assert minutes == {29_166_666: {"x": 2.0}, 29_166_667: {"x": 1.0, "y": 4.0}}


def test_take_empties_the_tally_and_give_back_owes_it_again_beside_what_came_since() -> None:
    tally = Tally()
    tally.add({"a": 1.0}, {"x": 1.0}, now=NOW)
    total, minutes = tally.take()
    assert not tally and tally.take() == ({}, {})
    tally.add({"a": 2.0}, {"x": 5.0}, now=NOW)
    tally.give_back(total, minutes)
    assert tally.take() == ({"a": 3.0}, {29_166_666: {"x": 6.0}})


def test_a_minute_with_no_counts_owes_nothing_for_it_but_is_still_owed() -> None:
    tally = Tally()
    tally.add({"a": 1.0}, {}, now=NOW)
    assert tally.take() == ({"a": 1.0}, {29_166_666: {}})


def test_threads_adding_at_once_lose_nothing() -> None:
    tally = Tally()

    def add_many() -> None:
        for _ in range(2000):
            tally.add({"n": 1.0}, {"m": 1.0}, now=NOW)

    threads = [threading.Thread(target=add_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tally.take() == ({"n": 16000.0}, {29_166_666: {"m": 16000.0}})


# --- as_args: the accept script's trailing arguments ---------------------------------------------


def test_as_args_packs_counts_then_pairs_with_whole_numbers_printed_whole() -> None:
    total = {"delivery|quarantined|-|-|live": 1.0, "ack_sum_ms": 2.25}
    minutes = {29_166_666: {"out|quarantined": 1.0}, 29_166_667: {"ack|1": 3.0, "ack|2": 1.0}}
    assert as_args(total, minutes) == [
        2,
        "delivery|quarantined|-|-|live",
        "1",
        "ack_sum_ms",
        "2.25",
        2,
        29_166_666,
        1,
        "out|quarantined",
        "1",
        29_166_667,
        2,
        "ack|1",
        "3",
        "ack|2",
        "1",
    ]
    assert as_args({}, {}) == [0, 0]
    assert as_args({"x": 0.1 + 0.2}, {})[2] == repr(0.1 + 0.2)  # a float keeps every digit


APPLY_ONLY = (
    APPLY_TALLY
    + """
-- KEYS[1]: the totals hash.  ARGV: the minute prefix, the minutes' TTL, then the tally from ARGV[3].
return apply_tally(KEYS[1], ARGV[1], tonumber(ARGV[2]), 3)
"""
)
"""The accept script's tally step alone: the same Lua, reading what as_args packed."""


def redis_state(conn: redis.Redis) -> dict[str, dict[str, float]]:
    """Every stats hash, its fields as numbers."""
    keys = sorted(k.decode() for k in conn.keys("scb:stats:*"))
    return {key: {n.decode(): float(v) for n, v in conn.hgetall(key).items()} for key in keys}


def test_what_as_args_packs_the_accept_scripts_lua_applies_as_the_pipeline_does(redis_conn: redis.Redis) -> None:
    tally = Tally()
    tally.add(*stats.ack_latency(3.2), now=NOW)
    tally.add(*stats.outcome_counts("unavailable", "test"), now=NOW)
    tally.add(*stats.ack_latency(0.5), now=NOW + 60)
    total, minutes = tally.take()
    args = as_args(total, minutes)
    script = redis_conn.register_script(APPLY_ONLY)
    next_index = script(keys=[TOTAL_KEY], args=[MINUTE_PREFIX, MINUTE_TTL, *args])
    assert next_index == 3 + len(args)  # the Lua read exactly what was packed
    through_lua = redis_state(redis_conn)
    assert through_lua == {
        TOTAL_KEY: {"ack_bucket|5": 1.0, "ack_bucket|1": 1.0, "ack_sum_ms": 3.7, "delivery|unavailable|-|-|test": 1.0},
        minute_key(29_166_666): {"ack|5": 1.0, "out|unavailable": 1.0},
        minute_key(29_166_667): {"ack|1": 1.0},
    }
    for minute in minutes:
        assert 0 < redis_conn.ttl(minute_key(minute)) <= MINUTE_TTL
    redis_conn.flushall()
    pipe = redis_conn.pipeline(transaction=False)
    stats.apply(pipe, total, minutes)
    pipe.execute()
    assert redis_state(redis_conn) == through_lua


def test_flush_delivers_what_is_owed_and_reads_back(redis_conn: redis.Redis) -> None:
    tally = Tally()
    now = time.time()
    tally.add(*stats.handler_run("h", "categorization", "done", 0.02), now=now)
    tally.add(*stats.job_outcome("done"), now=now)
    stats.flush(redis_conn, tally)
    assert not tally
    assert stats.totals(redis_conn) == {
        "handler_run|h|categorization|done": 1.0,
        "handler_bucket|h|0.025": 1.0,
        "handler_sum_s|h": 0.02,
        "handler_count|h": 1.0,
        "job|done": 1.0,
    }
    last_three = stats.minutes(redis_conn, 3, now=now)
    assert [m for m, _ in last_three] == [current_minute(now) - 2, current_minute(now) - 1, current_minute(now)]
    assert last_three[-1][1] == {"run|done": 1.0, "job|done": 1.0} and last_three[0][1] == {}
    stats.flush(redis_conn, tally)  # nothing owed: nothing written, no error
    assert stats.totals(redis_conn)["job|done"] == 1.0


def test_a_flush_that_fails_owes_everything_again() -> None:
    tally = Tally()
    tally.add({"a": 1.0}, {"x": 1.0}, now=NOW)
    down = unreachable_redis()
    with pytest.raises(redis.ConnectionError):
        stats.flush(down, tally)
    assert tally.take() == ({"a": 1.0}, {29_166_666: {"x": 1.0}})


def test_apply_now_writes_no_minute_for_increments_without_one(redis_conn: redis.Redis) -> None:
    pipe = redis_conn.pipeline(transaction=False)
    stats.apply_now(pipe, stats.unhandled("madeup", "completed"), now=NOW)
    stats.apply_now(pipe, stats.job_outcome("failed"), now=NOW)
    pipe.execute()
    assert redis_state(redis_conn) == {
        TOTAL_KEY: {"unhandled|other|completed": 1.0, "job|failed": 1.0},
        minute_key(29_166_666): {"job|failed": 1.0},
    }

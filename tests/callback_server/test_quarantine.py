"""The quarantine store: bounded details whatever the validator says, and a retention per entry."""

from __future__ import annotations

import json

import redis
from flask.testing import FlaskClient

from callback_server import defaults
from callback_server.quarantine import (
    INDEX_KEY,
    MAX_DETAIL_ENTRIES,
    MAX_DETAILS_BYTES,
    TRUNCATED_KEY,
    Quarantine,
    _leaves,
    cap_details,
)
from tests.support.fixtures import load_fixture
from tests.support.http import post
from tests.support.processes import wait_for


def box_errors(n: int) -> dict[str, object]:
    """The shape marshmallow gives for ``n`` bad boxes of an annotation response."""
    return {
        "response": {
            "annotations": {
                i: {"left": ["Missing data for required field."], "label": ["Not a valid string."]} for i in range(n)
            }
        }
    }


def test_small_details_are_stored_as_they_are() -> None:
    details = {"response": {"category": ["Must be one of: red, blue."]}, "task_id": ["Missing."]}
    assert cap_details(details) == details
    assert cap_details(["one", "two"]) == ["one", "two"]
    assert cap_details("body is not valid JSON") == "body is not valid JSON"
    assert cap_details(None) is None


def test_many_errors_are_capped_in_count_with_a_note_of_how_many_were_dropped() -> None:
    capped = cap_details(box_errors(10_000))
    text = json.dumps(capped)
    assert len(text.encode()) <= MAX_DETAILS_BYTES
    messages = [leaf for path, leaf in _leaves(capped) if path[0] != TRUNCATED_KEY]
    assert len(messages) == MAX_DETAIL_ENTRIES
    assert capped[TRUNCATED_KEY].startswith(f"{20_000 - MAX_DETAIL_ENTRIES} more validation messages dropped")
    # What is kept reads like the original: the first boxes, with their paths.
    assert capped["response"]["annotations"]["0"] == {
        "left": ["Missing data for required field."],
        "label": ["Not a valid string."],
    }


def test_long_messages_are_capped_in_size() -> None:
    details = {f"field{i}": ["x" * 5000] for i in range(40)}
    capped = cap_details(details)
    assert len(json.dumps(capped).encode()) <= MAX_DETAILS_BYTES
    assert capped["field0"][0].endswith("... (cut)")
    assert "more validation messages dropped" in capped[TRUNCATED_KEY]
    assert "x" * 5000 not in json.dumps(capped)


def test_a_list_of_many_messages_is_capped_too() -> None:
    capped = cap_details([f"error {i}" for i in range(1000)])
    assert capped[:2] == ["error 0", "error 1"]
    assert capped[-1] == {TRUNCATED_KEY: capped[-1][TRUNCATED_KEY]}
    assert len(capped) == MAX_DETAIL_ENTRIES + 1


def test_keep_stores_capped_details_with_a_retention(redis_conn: redis.Redis) -> None:
    store = Quarantine(redis_conn)
    qid = store.keep(b"{}", reason="x" * 5000, details=box_errors(5000), mode="live", content_type="application/json")
    key = f"{defaults.QUARANTINE_PREFIX}:{qid}"
    assert len(redis_conn.hget(key, "details")) <= MAX_DETAILS_BYTES
    assert len(redis_conn.hget(key, "reason")) < 1100
    assert defaults.QUARANTINE_TTL - 5 <= redis_conn.ttl(key) <= defaults.QUARANTINE_TTL
    item = store.get(qid)
    assert item.expires_in is not None and defaults.QUARANTINE_TTL - 5 <= item.expires_in <= defaults.QUARANTINE_TTL
    assert item.expires_at is not None and item.summary()["expires_at"] == item.expires_at


def test_an_expired_entry_leaves_list_count_and_index(redis_conn: redis.Redis) -> None:
    short = Quarantine(redis_conn, ttl=1)
    gone = short.keep(b"[1]", reason="r", details=None, mode="live", content_type="application/json")
    wait_for(lambda: short.count() == 0 and short.recent() == [], timeout=5, what="the entry to expire")
    wait_for(lambda: not redis_conn.exists(f"{defaults.QUARANTINE_PREFIX}:{gone}"), timeout=5)
    # The next keep prunes the index entry of what Redis forgot.
    kept = short.keep(b"[2]", reason="r", details=None, mode="live", content_type="application/json")
    assert redis_conn.zscore(INDEX_KEY, gone) is None
    assert short.ids() == [kept]


def test_receiving_it_again_restarts_its_retention(redis_conn: redis.Redis) -> None:
    store = Quarantine(redis_conn, ttl=3600)
    qid = store.keep(b"[1]", reason="r", details=None, mode="live", content_type="application/json")
    redis_conn.expire(f"{defaults.QUARANTINE_PREFIX}:{qid}", 10)
    store.keep(b"[1]", reason="r", details=None, mode="live", content_type="application/json")
    assert store.get(qid).times_received == 2
    assert redis_conn.ttl(f"{defaults.QUARANTINE_PREFIX}:{qid}") > 3500


def test_an_amplifying_body_through_the_endpoint_stores_little(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("annotation")
    body["response"]["annotations"] = [{}] * 3000  # each empty box fails several fields
    body["task"]["response"] = body["response"]
    response = post(client, body)
    assert response.get_json() == {"status": "quarantined"}
    (item,) = Quarantine(redis_conn).recent()
    stored = redis_conn.hget(f"{defaults.QUARANTINE_PREFIX}:{item.quarantine_id}", "details")
    assert len(stored) <= MAX_DETAILS_BYTES
    assert "more validation messages dropped" in stored.decode()
    assert item.expires_in is not None and item.expires_in > defaults.QUARANTINE_TTL - 60

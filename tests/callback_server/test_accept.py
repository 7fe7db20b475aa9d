"""The one accept path: what each kind of body becomes, for every caller alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from callback_server import accept, events
from callback_server.accept import (
    DUPLICATE,
    NOT_FOUND,
    QUARANTINED,
    QUEUED,
    SKIPPED,
    AcceptPath,
    Offered,
)
from callback_server.config import Settings
from callback_server.embedded import RedisProcess
from callback_server.exceptions import UnkeepableError
from callback_server.quarantine import Quarantine
from tests.support.fixtures import load_fixture, poison_body
from tests.support.jobs import queued_jobs


@pytest.fixture
def path(settings: Settings, redis_conn: redis.Redis) -> AcceptPath:
    return AcceptPath.from_settings(settings, redis_conn)


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_a_valid_body_is_queued_once_then_a_duplicate(path: AcceptPath, redis_conn: redis.Redis) -> None:
    body = raw(load_fixture("categorization"))
    first = path.offer(body, mode="live", source="callback")
    again = path.offer(body, mode="live", source="callback")
    assert (first.outcome, first.event, first.task_type) == (QUEUED, "completed", "categorization")
    assert (again.outcome, again.delivery_id) == (DUPLICATE, first.delivery_id)
    assert first.accepted and again.accepted
    (job,) = queued_jobs(redis_conn)
    assert job.id == first.delivery_id and job.args[0]["source"] == "callback"


def test_the_event_is_derived_once_per_body(path: AcceptPath, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    original = events.derive_event

    def counting(task: Any) -> events.Event:
        calls.append(task)
        return original(task)

    for module in ("callback_server.schemas", "callback_server.deliveries"):
        monkeypatch.setattr(f"{module}.derive_event", counting)
    assert path.offer(raw(load_fixture("phonecall")), mode="live", source="callback").outcome == QUEUED
    assert len(calls) == 1


def test_an_invalid_body_is_quarantined_with_the_reason(path: AcceptPath, redis_conn: redis.Redis) -> None:
    body = load_fixture("categorization")
    del body["response"]["category"]
    offered = path.offer(raw(body), mode="test", source="callback", content_type="application/json")
    assert offered.outcome == QUARANTINED and not offered.accepted and not offered.unexpected
    assert offered.event == "completed" and offered.reason == "body does not match the callback schema"
    kept = Quarantine(redis_conn).get(offered.quarantine_id)
    assert (kept.reason, kept.mode, kept.body) == (offered.reason, "test", raw(body))
    assert queued_jobs(redis_conn) == []


def test_a_body_that_breaks_past_validation_is_kept_not_raised(path: AcceptPath, redis_conn: redis.Redis) -> None:
    offered = path.offer(poison_body().encode(), mode="live", source="reconcile")
    assert offered.outcome == QUARANTINED and offered.unexpected
    assert offered.replay_outcome == "kept"
    kept = Quarantine(redis_conn).get(offered.quarantine_id)
    # A caller other than Scale's POST is named in the reason, so an operator knows where it came from.
    assert kept.reason == "reconcile: body passed validation but could not be queued: RecursionError"


def test_a_replay_accepts_and_forgets_or_keeps_with_the_new_reason(path: AcceptPath, redis_conn: redis.Redis) -> None:
    body = load_fixture("phonecall")
    body["response"]["outcome"] = "voicemail"  # not one of the documented outcomes
    kept = path.offer(raw(body), mode="live", source="callback").quarantine_id
    redis_conn.hset(f"scb:quarantine:{kept}", "reason", "an older reason")
    still = path.replay(kept)
    assert (still.outcome, still.replay_outcome, still.quarantine_id) == (QUARANTINED, "still invalid", kept)
    assert Quarantine(redis_conn).get(kept).reason == "body does not match the callback schema"
    assert Quarantine(redis_conn).count() == 1  # noted on the entry it came from, not kept twice
    body["response"]["outcome"] = "success"
    redis_conn.hset(f"scb:quarantine:{kept}", "body", json.dumps(body))
    done = path.replay(kept)
    assert done.outcome == QUEUED and Quarantine(redis_conn).count() == 0
    (job,) = queued_jobs(redis_conn)
    assert job.args[0]["source"] == "replay"
    assert path.replay(kept) == Offered(
        NOT_FOUND, quarantine_id=kept, reason=f"no quarantined delivery with id {kept!r}"
    )


def test_a_listed_task_is_offered_as_its_callback(path: AcceptPath, redis_conn: redis.Redis) -> None:
    task = load_fixture("categorization")["task"]
    task["is_test"] = True
    offered = path.offer_task(task, source="fetch")
    assert (offered.outcome, offered.task_id) == (QUEUED, task["task_id"])
    (job,) = queued_jobs(redis_conn)
    assert (job.args[0]["mode"], job.args[0]["source"]) == ("test", "fetch")
    assert path.offer_task(task, source="reconcile").outcome == DUPLICATE
    pending = {**task, "status": "pending", "completed_at": None}
    assert path.offer_task(pending, source="reconcile").outcome == SKIPPED


def test_a_redis_error_is_raised_and_nothing_is_kept(
    path: AcceptPath, redis_conn: redis.Redis, redis_server: RedisProcess
) -> None:
    redis_server.stop()
    try:
        with pytest.raises(redis.RedisError):
            path.offer(b"{", mode="live", source="callback")
    finally:
        redis_server.start()
    assert Quarantine(redis.Redis.from_url(redis_server.url)).count() == 0


class FailingQuarantine(Quarantine):
    def keep(self, body: bytes, **kwargs: Any) -> str:
        raise ValueError("cannot keep")


def test_a_body_that_cannot_be_kept_raises_unkeepable(settings: Settings, redis_conn: redis.Redis) -> None:
    path = AcceptPath(AcceptPath.from_settings(settings, redis_conn).deliveries, FailingQuarantine(redis_conn))
    with pytest.raises(UnkeepableError) as caught:
        path.offer(b"[1]", mode="live", source="callback")
    assert caught.value.message == "body does not match the callback schema, and not kept: ValueError"
    assert accept.event_name({"status": "no such status"}) == "unknown"

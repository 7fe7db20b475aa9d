"""Delivery identity (pure) and the job hash the accept script writes (against RQ's own format)."""

from __future__ import annotations

import copy
import json
import zlib
from datetime import UTC, datetime, timedelta

import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import utcformat

from callback_server.deliveries import Delivery, DeliveryQueue, delivery_id, rq_timestamp
from tests.support.fixtures import load_fixture


def test_identity_ignores_key_order_and_unrelated_fields() -> None:
    body = load_fixture("annotation")
    shuffled = dict(reversed(list(copy.deepcopy(body).items())))
    shuffled["task"]["metadata"] = {"changed": True}
    shuffled["task"]["callback_succeeded"] = False
    assert delivery_id(body) == delivery_id(shuffled)
    assert len(delivery_id(body)) == 32


def test_identity_reads_completion_time_as_an_instant_not_a_string() -> None:
    body = load_fixture("categorization")
    listed = copy.deepcopy(body)
    listed["task"]["completed_at"] = "2016-06-23T21:54:44.904000+00:00"  # the same instant, spelled otherwise
    assert delivery_id(body) == delivery_id(listed)


def test_identity_changes_with_status_completion_time_and_response() -> None:
    body = load_fixture("categorization")
    ids = {delivery_id(body)}
    for change in (
        lambda b: b["task"].update(status="canceled"),
        lambda b: b["task"].update(completed_at="2020-01-01T00:00:00.000Z"),
        lambda b: b.update(response={"category": "blue"}),
        lambda b: b.update(task_id="other") or b["task"].update(task_id="other"),
    ):
        changed = copy.deepcopy(body)
        change(changed)
        ids.add(delivery_id(changed))
    assert len(ids) == 5


def test_job_hash_matches_what_rq_itself_writes(redis_conn: redis.Redis) -> None:
    queue = DeliveryQueue(redis_conn)
    delivery = Delivery.from_body(load_fixture("phonecall"), mode="test")
    assert queue.accept(delivery)
    ours = {k.decode(): v.decode() for k, v in redis_conn.hgetall(f"rq:job:{delivery.delivery_id}").items()}
    theirs = queue.build_job(delivery).to_dict()
    assert set(ours) == set(theirs)
    for name in set(ours) - {"created_at", "enqueued_at", "data"}:
        theirs_value = theirs[name].value if hasattr(theirs[name], "value") else theirs[name]
        assert str(ours[name]) == str(theirs_value), name
    # The same document; the bytes may differ in spacing (RQ reads it with json.loads).
    assert json.loads(ours["data"]) == json.loads(zlib.decompress(theirs["data"]))
    assert ours["created_at"] == ours["enqueued_at"]
    assert len(ours["created_at"]) == len(utcformat(datetime.now(UTC)))


def test_job_timestamps_are_written_as_rq_formats_them() -> None:
    start = datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=UTC)
    for moment in (start, start + timedelta(microseconds=1), datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)):
        assert rq_timestamp(moment) == utcformat(moment)


def test_accepted_job_loads_in_rq_with_its_argument(redis_conn: redis.Redis) -> None:
    queue = DeliveryQueue(redis_conn)
    delivery = Delivery.from_body(load_fixture("datacollection"), mode="live")
    assert queue.accept(delivery) is True
    assert queue.accept(delivery) is False
    job = Job.fetch(delivery.delivery_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.func_name == "workers.dispatch.process_delivery"
    assert job.args == (delivery.as_job_arg(),) or list(job.args) == [delivery.as_job_arg()]
    assert job.get_status() == "queued"
    assert job.retries_left == 5
    assert job.origin == "callbacks"
    assert job.enqueued_at is not None

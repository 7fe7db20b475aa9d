"""The accept script writes RQ's job hash itself (one round trip): these fail, with a clear message,
when an RQ upgrade changes what that hash must hold, so an upgrade cannot break delivery silently."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import redis
import rq
from rq.job import Job
from rq.serializers import JSONSerializer

from callback_server.deliveries import DISPATCH_FUNCTION, Delivery, DeliveryQueue
from tests.support.fixtures import load_fixture

ROOT = Path(__file__).resolve().parents[2]

JOB_HASH_FIELDS_RQ_3_0 = {
    "created_at",
    "data",
    "description",
    "ended_at",
    "enqueued_at",
    "failure_callback_name",
    "failure_ttl",
    "group_id",
    "last_heartbeat",
    "origin",
    "result_ttl",
    "retries_left",
    "retry_intervals",
    "started_at",
    "status",
    "stopped_callback_name",
    "success_callback_name",
    "timeout",
    "worker_name",
}
"""What rq 3.0.0's Job.to_dict writes for one of our jobs (the accept script copies it)."""

UPGRADE_ADVICE = (
    "the accept script in callback_server/deliveries.py writes RQ's job hash by hand; after an RQ "
    "upgrade, check that RQ still reads it (worker, scheduler, registries), update the frozen values in "
    "this test, and note the change in CHANGELOG.md"
)


def test_rq_is_the_pinned_version() -> None:
    pinned = re.search(r"^rq==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned is not None, "requirements.txt must pin rq exactly (rq==X.Y.Z)"
    assert rq.__version__ == pinned.group(1), f"rq {rq.__version__} is installed, {pinned.group(1)} pinned"
    assert rq.__version__ == "3.0.0", f"rq was upgraded to {rq.__version__}: {UPGRADE_ADVICE}"


def test_rq_writes_the_job_hash_fields_we_copy(redis_conn: redis.Redis) -> None:
    queue = DeliveryQueue(redis_conn)
    written = set(queue.build_job(Delivery.from_body(load_fixture("phonecall"), mode="live")).to_dict())
    assert written == JOB_HASH_FIELDS_RQ_3_0, (
        f"RQ's job hash changed: new {sorted(written - JOB_HASH_FIELDS_RQ_3_0)}, "
        f"gone {sorted(JOB_HASH_FIELDS_RQ_3_0 - written)}: {UPGRADE_ADVICE}"
    )


def test_rq_serializes_the_job_data_as_the_accept_script_splices_it(redis_conn: redis.Redis) -> None:
    """The accept script splices the body into ``[func, null, [arg], {}]``: RQ's JSON layout must not move."""
    queue = DeliveryQueue(redis_conn)
    delivery = Delivery.from_body(load_fixture("annotation"), mode="live")
    theirs = json.loads(zlib.decompress(queue.build_job(delivery).to_dict()["data"]))
    ours = json.loads(delivery.job_data())
    assert theirs == ours, f"RQ's job data layout changed: {UPGRADE_ADVICE}"
    assert ours[0] == DISPATCH_FUNCTION
    assert queue.accept(delivery)
    job = Job.fetch(delivery.delivery_id, connection=redis_conn, serializer=JSONSerializer)
    assert (job.func_name, job.kwargs) == (DISPATCH_FUNCTION, {}), f"RQ reads our job otherwise: {UPGRADE_ADVICE}"
    assert job.args[0]["body"] == delivery.body

"""The ingest endpoint through HTTP: every answer, key rotation, dedup, quarantine, Redis faults."""

from __future__ import annotations

import copy
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from callback_server.deliveries import SEEN_PERIOD, delivery_id, seen_period_key
from callback_server.embedded import RedisProcess
from callback_server.quarantine import Quarantine
from callback_server.schemas import REFERENCE_TYPES
from tests.support.fixtures import load_fixture
from tests.support.http import post
from tests.support.jobs import queued_jobs
from tests.support.keys import LIVE_KEY, OLD_LIVE_KEY, TEST_KEY
from workers.payloads import build_task


@pytest.mark.parametrize(
    "name", [*REFERENCE_TYPES, "categorization_multiple", "audiotranscription_error", "unknown_type"]
)
def test_each_recorded_callback_is_queued_once(client: FlaskClient, redis_conn: redis.Redis, name: str) -> None:
    body = load_fixture(name)
    first = post(client, body)
    assert first.status_code == 200
    assert first.get_json() == {"status": "queued"}
    again = post(client, body)
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate"}
    jobs = queued_jobs(redis_conn)
    assert len(jobs) == 1
    job = jobs[0]
    (arg,) = job.args
    assert arg["task_id"] == body["task_id"]
    assert arg["type"] == body["task"]["type"]
    assert arg["body"] == body
    assert arg["mode"] == "live"
    assert arg["source"] == "callback"
    assert job.func_name == "workers.dispatch.process_delivery"
    assert body["task_id"] in job.description
    assert json.dumps(body["response"])[:20] not in job.description


def test_job_is_stored_as_json_not_pickle(client: FlaskClient, redis_conn: redis.Redis) -> None:
    post(client, load_fixture("categorization"))
    (job_id,) = redis_conn.lrange("rq:queue:callbacks", 0, -1)
    data = json.loads(redis_conn.hget(b"rq:job:" + job_id, "data"))
    assert data[0] == "workers.dispatch.process_delivery"
    assert data[2][0]["task_id"] == load_fixture("categorization")["task_id"]


def test_unknown_fields_are_kept(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("annotation")
    body["task"]["brand_new_field"] = {"x": 1}
    body["response"]["annotations"][0]["confidence"] = 0.9
    body["extra_top_level"] = True
    body["task"]["response"] = body["response"]
    assert post(client, body).get_json() == {"status": "queued"}
    (job,) = queued_jobs(redis_conn)
    assert job.args[0]["body"]["task"]["brand_new_field"] == {"x": 1}
    assert job.args[0]["body"]["response"]["annotations"][0]["confidence"] == 0.9


def test_a_list_category_without_allow_multiple_is_queued(client: FlaskClient, redis_conn: redis.Redis) -> None:
    """The 2016 text never lists allow_multiple among the stored params: a list answer is no proof of error."""
    body = _with("categorization", ["response", "category"], ["red", "blue"])
    body["task"]["response"] = body["response"]
    assert post(client, body).get_json() == {"status": "queued"}


def test_form_encoded_allow_multiple_still_asks_for_a_list(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("categorization")
    body["task"]["params"]["allow_multiple"] = "true"
    assert post(client, body).get_json() == {"status": "quarantined"}
    body["response"] = body["task"]["response"] = {"category": ["red"]}
    assert post(client, body).get_json() == {"status": "queued"}


def test_a_lone_surrogate_in_a_response_is_queued_not_a_500(client: FlaskClient, redis_conn: redis.Redis) -> None:
    raw = json.dumps(load_fixture("categorization")).replace('"category": "red"', '"category": "\\ud800"')
    assert "\\ud800" in raw
    first = post(client, raw)
    assert first.status_code == 200
    assert first.get_json() == {"status": "queued"}
    assert post(client, raw).get_json() == {"status": "duplicate"}


def test_audit_callback_with_different_content_is_a_new_delivery(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("categorization")
    assert post(client, body).get_json() == {"status": "queued"}
    audited = copy.deepcopy(body)
    audited["response"] = {"category": "blue"}
    audited["task"]["response"] = audited["response"]
    audited["task"]["completed_at"] = "2016-06-24T10:00:00.000Z"
    assert post(client, audited).get_json() == {"status": "queued"}
    assert len(queued_jobs(redis_conn)) == 2
    assert len({job.id for job in queued_jobs(redis_conn)}) == 2


def test_key_order_and_whitespace_do_not_make_a_new_delivery(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("transcription")
    assert post(client, json.dumps(body)).get_json() == {"status": "queued"}
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)
    assert post(client, reordered).get_json() == {"status": "duplicate"}


def test_dedup_key_expires_after_the_configured_ttl(client: FlaskClient, redis_conn: redis.Redis, app: Any) -> None:
    post(client, load_fixture("categorization"))
    (key,) = redis_conn.keys("scb:seen:*")
    ttl = redis_conn.ttl(key)
    dedup_ttl = app.extensions["callback_server"].settings.dedup_ttl
    # An identity is kept in a 6-hour bucket, which expires DEDUP_TTL after the bucket ends.
    assert dedup_ttl - 5 <= ttl <= dedup_ttl + SEEN_PERIOD
    assert redis_conn.hlen(key) == 1


def test_an_identity_in_an_older_bucket_is_still_a_duplicate(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("categorization")
    post(client, body)
    (key,) = redis_conn.keys("scb:seen:h*")
    bucket = int(key.decode().rsplit("h", 1)[1])
    redis_conn.rename(key, seen_period_key(bucket - 4))  # accepted a day ago
    assert post(client, body).get_json() == {"status": "duplicate"}
    redis_conn.rename(seen_period_key(bucket - 4), seen_period_key(bucket - 40))  # ten days ago: forgotten
    assert post(client, body).get_json() == {"status": "queued"}


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "expected_mode"), [(LIVE_KEY, "live"), (OLD_LIVE_KEY, "live"), (TEST_KEY, "test")])
def test_every_configured_key_is_accepted_and_its_mode_recorded(
    client: FlaskClient, redis_conn: redis.Redis, key: str, expected_mode: str
) -> None:
    assert post(client, load_fixture("comparison"), key=key).status_code == 200
    (job,) = queued_jobs(redis_conn)
    assert job.args[0]["mode"] == expected_mode


def test_the_test_key_cannot_pre_empt_a_live_delivery_and_its_task_is_a_test(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    body = load_fixture("categorization")
    body["task"]["is_test"] = False  # the body's word; the key's is what counts
    assert post(client, body, key=TEST_KEY).get_json() == {"status": "queued"}
    assert post(client, body, key=LIVE_KEY).get_json() == {"status": "queued"}  # not a duplicate of the test one
    assert post(client, body, key=LIVE_KEY).get_json() == {"status": "duplicate"}
    assert post(client, body, key=TEST_KEY).get_json() == {"status": "duplicate"}
    test_job, live_job = queued_jobs(redis_conn)
    assert live_job.id == delivery_id(body)  # a live identity is what it always was
    assert test_job.id == delivery_id(body, "test") != live_job.id
    assert build_task(test_job.args[0]).is_test and not build_task(live_job.args[0]).is_test
    test_task = load_fixture("annotation")
    test_task["task"]["is_test"] = True  # a test task: one identity whichever key brings it (the reconciler's)
    assert post(client, test_task, key=TEST_KEY).get_json() == {"status": "queued"}
    assert post(client, test_task, key=LIVE_KEY).get_json() == {"status": "duplicate"}
    assert delivery_id(test_task, "test") == delivery_id(test_task)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"scale-callback-auth": ""},
        {"scale-callback-auth": "wrong"},
        {"scale-callback-auth": LIVE_KEY + "x"},
        {"scale-callback-auth": LIVE_KEY[:-1]},
        {"scale-callback-auth": LIVE_KEY.upper()},
        {"scale-callback-auth": "ключ"},
        {"scale-callback-auth": f"{LIVE_KEY},{OLD_LIVE_KEY}"},
    ],
    ids=["missing", "empty", "wrong", "longer", "shorter", "case", "non-ascii", "both-keys"],
)
def test_bad_keys_get_401_and_store_nothing(
    client: FlaskClient, redis_conn: redis.Redis, headers: dict[str, str]
) -> None:
    response = client.post(
        "/callback",
        data=json.dumps(load_fixture("categorization")),
        headers=headers,
        content_type="application/json",
    )
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert redis_conn.dbsize() == 0


def test_401_comes_before_the_body_is_looked_at(client: FlaskClient, redis_conn: redis.Redis) -> None:
    response = post(client, b"\xff not json", key="nope", content_type="text/plain")
    assert response.status_code == 401
    assert redis_conn.dbsize() == 0


# --- content type and size -----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "text/json"])
def test_non_json_content_types_get_415(client: FlaskClient, redis_conn: redis.Redis, content_type: str) -> None:
    response = post(client, load_fixture("categorization"), content_type=content_type)
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert redis_conn.dbsize() == 0


def test_json_with_charset_and_vendor_json_types_are_accepted(client: FlaskClient) -> None:
    charset = post(client, load_fixture("categorization"), content_type="application/json; charset=utf-8")
    assert charset.status_code == 200
    body = load_fixture("transcription")
    assert post(client, body, content_type="application/vnd.scale+json").status_code == 200


def test_body_over_the_limit_gets_413(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("annotation")
    box = {"left": 1, "top": 2, "width": 3, "height": 4, "label": "big cow"}
    body["response"]["annotations"] = [box] * 200_000  # ~11 MB
    data = json.dumps(body)
    assert len(data) > 10 * 1024 * 1024
    response = post(client, data)
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert redis_conn.dbsize() == 0


# --- quarantine ----------------------------------------------------------------------------------


def _with(name: str, path: list[Any], value: Any) -> dict[str, Any]:
    body = load_fixture(name)
    target = body
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


_DELETE = object()

BAD_BODIES: dict[str, bytes | str | Any] = {
    "empty body": b"",
    "whitespace body": b"   \n",
    "truncated json": json.dumps(load_fixture("categorization"))[:-7],
    "not utf-8": b'{"task_id": "\xff\xfe"}',
    "utf-16 body": json.dumps(load_fixture("categorization")).encode("utf-16"),
    "json array": [1, 2, 3],
    "json string": "just a string",
    "NaN literal": '{"task_id": NaN}',
    "huge integer": '{"task_id": "a", "response": {"x": ' + "9" * 5000 + '}, "task": {}}',
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "missing task_id": _with("categorization", ["task_id"], _DELETE),
    "missing response": _with("categorization", ["response"], _DELETE),
    "missing task": _with("categorization", ["task"], _DELETE),
    "task_id not a string": _with("categorization", ["task_id"], 12345),
    "mismatched ids": _with("categorization", ["task_id"], "someone-elses-task"),
    "task without type": _with("categorization", ["task", "type"], _DELETE),
    "response not an object": _with("categorization", ["response"], ["red"]),
    "bad completed_at": _with("categorization", ["task", "completed_at"], "yesterday"),
    "is_test as string": _with("categorization", ["task", "is_test"], "true"),
    "category a number": _with("categorization", ["response", "category"], 7),
    "category string with allow_multiple": _with("categorization_multiple", ["response", "category"], "Red Cross"),
    "category_id shape differs": _with("categorization_multiple", ["response", "category_id"], "123"),
    "transcription fields a list": _with("transcription", ["response", "fields"], ["Some Title"]),
    "datacollection without fields": _with("datacollection", ["response", "fields"], _DELETE),
    "phonecall unknown outcome": _with("phonecall", ["response", "outcome"], "voicemail"),
    "phonecall choice a list": _with("phonecall", ["response", "choice"], ["He is happy"]),
    "comparison with neither": _with("comparison", ["response"], {}),
    "annotation boxes not a list": _with("annotation", ["response", "annotations"], {"left": 1}),
    "annotation left a string": _with("annotation", ["response", "annotations", 0, "left"], "123"),
    "annotation negative width": _with("annotation", ["response", "annotations", 0, "width"], -4),
    "annotation huge number": _with("annotation", ["response", "annotations", 0, "top"], 1e300),
    "annotation boolean height": _with("annotation", ["response", "annotations", 0, "height"], True),
    "audio without duration": _with("audiotranscription", ["response", "duration"], _DELETE),
    "audio negative duration": _with("audiotranscription", ["response", "duration"], -1.5),
    "audio error a number": _with("audiotranscription_error", ["response", "error"], 500),
    # Since events: what still cannot be a delivery of any event.
    "task without status": _with("categorization", ["task", "status"], _DELETE),
    "status Scale never sends": _with("categorization", ["task", "status"], "in_progress"),
    "completed with null response": _with("categorization", ["response"], None),
    "error event without a message": _with(
        "categorization", ["task"], {**load_fixture("categorization")["task"], "status": "error", "completed_at": None}
    ),
    "categorization with neither form": _with("categorization", ["response"], {"category_id": "x"}),
    "taxonomies not an object": _with("categorization", ["response"], {"taxonomies": ["a"]}),
    "taxonomy answer a number": _with("categorization", ["response"], {"taxonomies": {"colour": 3}}),
    "audits not a list": _with("categorization", ["task", "audits"], {"audit_result": "accepted"}),
    "audit result a number": _with("categorization", ["task", "audits"], [{"audit_result": 1}]),
    "completed_at with no UTC instant": _with("categorization", ["task", "completed_at"], "0001-01-01T00:00:00+14:00"),
    "lone surrogate in task_id": '{"task_id": "a\\ud800", "response": {"category": "red"}, "task": '
    '{"task_id": "a\\ud800", "type": "categorization", "status": "completed", "response": {"category": "red"}}}',
    "number too large for a float": json.dumps(load_fixture("categorization")).replace(
        '"metadata": {}', '"metadata": {"n": 1e400}'
    ),
    "annotation box missing width": _with("annotation", ["response", "annotations", 0, "width"], _DELETE),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies_are_quarantined_with_200_and_not_queued(
    client: FlaskClient, redis_conn: redis.Redis, name: str
) -> None:
    body = BAD_BODIES[name]
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    response = post(client, raw)
    assert response.status_code == 200, response.get_data()
    assert response.get_json() == {"status": "quarantined"}
    assert queued_jobs(redis_conn) == []
    assert redis_conn.keys("scb:seen:*") == []
    (kept,) = Quarantine(redis_conn).recent()
    assert kept.body == raw
    assert kept.reason
    assert kept.mode == "live"
    stored = redis_conn.hgetall(f"scb:quarantine:{kept.quarantine_id}")
    assert LIVE_KEY.encode() not in b"".join(stored.values())


def test_quarantine_reason_is_specific(client: FlaskClient, redis_conn: redis.Redis) -> None:
    post(client, BAD_BODIES["mismatched ids"])
    (kept,) = Quarantine(redis_conn).recent()
    assert kept.reason == "body does not match the callback schema"
    assert kept.details == {"task_id": ["must equal task.task_id"]}


def test_same_bad_body_twice_is_one_quarantine_record(client: FlaskClient, redis_conn: redis.Redis) -> None:
    post(client, b"{broken")
    post(client, b"{broken")
    (kept,) = Quarantine(redis_conn).recent()
    assert kept.times_received == 2


# --- concurrency and Redis faults ----------------------------------------------------------------


def test_fifty_concurrent_copies_make_exactly_one_job(app: Any, redis_conn: redis.Redis) -> None:
    body = json.dumps(load_fixture("annotation"))
    barrier = threading.Barrier(50)

    def send(_: int) -> str:
        client = app.test_client()
        barrier.wait()
        response = post(client, body)
        assert response.status_code == 200
        return str(response.get_json()["status"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(send, range(50)))
    assert answers.count("queued") == 1
    assert answers.count("duplicate") == 49
    assert len(queued_jobs(redis_conn)) == 1


def test_redis_down_gives_503_then_the_retry_is_accepted_once(
    client: FlaskClient, redis_conn: redis.Redis, redis_server: RedisProcess
) -> None:
    body = load_fixture("phonecall")
    redis_server.stop()
    try:
        started = time.monotonic()
        response = post(client, body)
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert response.get_json()["error"] == "store_unavailable"
        assert elapsed < 3.5
        # Quarantine needs Redis too: a bad body must not be dropped with a 200 either.
        assert post(client, b"{broken").status_code == 503
    finally:
        redis_server.start()
    conn = redis.Redis.from_url(redis_server.url)
    assert conn.keys("scb:seen:*") == []
    assert post(client, body).get_json() == {"status": "queued"}
    assert post(client, body).get_json() == {"status": "duplicate"}
    assert len(queued_jobs(conn)) == 1


def test_healthz_and_readyz(client: FlaskClient, redis_server: RedisProcess) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    redis_server.stop()
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert LIVE_KEY not in ready.get_data(as_text=True)
        assert client.get("/healthz").status_code == 200
    finally:
        redis_server.start()


def test_readyz_reports_a_redis_that_refuses_writes(client: FlaskClient, redis_conn: redis.Redis) -> None:
    """A full Redis under noeviction answers PING but refuses every write: not ready."""
    redis_conn.config_set("maxmemory", 1)
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json() == {"status": "unavailable", "details": "redis refuses writes (OutOfMemoryError)"}
    finally:
        redis_conn.config_set("maxmemory", 0)
    assert client.get("/readyz").status_code == 200


def test_get_on_callback_is_405(client: FlaskClient) -> None:
    response = client.get("/callback")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"

"""/metrics: only with METRICS_TOKEN, only for its bearer, and exactly what the shared counters say."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.serializers import JSONSerializer

from callback_server import stats
from callback_server.config import Secret, Settings
from callback_server.embedded import RedisProcess
from callback_server.reconcile import RUNS_KEY
from callback_server.status import read_status
from callback_server.web import create_app
from tests.support.fixtures import load_fixture
from tests.support.keys import LIVE_KEY, TEST_KEY

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def metrics_app(settings: Settings) -> Iterator[Flask]:
    """The receiver with METRICS_TOKEN set."""
    app = create_app(replace(settings, metrics_token=Secret(TOKEN)))
    app.config["TESTING"] = True
    yield app
    app.extensions["callback_server"].tally.stop()


@pytest.fixture
def metrics_client(metrics_app: Flask) -> FlaskClient:
    return metrics_app.test_client()


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and sorted labels (parsed by prometheus-client's own parser)."""
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def post(client: FlaskClient, body: object, key: str = LIVE_KEY) -> str:
    data = body if isinstance(body, str) else json.dumps(body)
    answer = client.post("/callback", data=data, content_type="application/json", headers={"scale-callback-auth": key})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["status"]


def test_without_a_token_the_route_does_not_exist(client: FlaskClient) -> None:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 404
    assert answer.get_json()["error"] == "not_found"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer wrong",
        f"{TOKEN}",
        "Bearer t\u00f6ken",
    ],
)
def test_the_token_is_required(metrics_client: FlaskClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = metrics_client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "unauthorized", "details": "send Authorization: Bearer <METRICS_TOKEN>"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"scb_" not in answer.data


def test_the_scheme_is_case_insensitive(metrics_client: FlaskClient) -> None:
    assert metrics_client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_counts_and_latency_after_a_known_sequence(metrics_client: FlaskClient) -> None:
    body = load_fixture("categorization")
    assert post(metrics_client, body) == "queued"
    assert post(metrics_client, body) == "duplicate"
    assert post(metrics_client, body) == "duplicate"
    assert post(metrics_client, load_fixture("annotation"), key=TEST_KEY) == "queued"
    assert post(metrics_client, "{not json") == "quarantined"
    samples = scrape(metrics_client)
    delivery = "scb_deliveries_total"
    assert (
        samples[
            (delivery, (("event", "completed"), ("mode", "live"), ("outcome", "queued"), ("type", "categorization")))
        ]
        == 1
    )
    assert (
        samples[
            (delivery, (("event", "completed"), ("mode", "live"), ("outcome", "duplicate"), ("type", "categorization")))
        ]
        == 2
    )
    assert (
        samples[(delivery, (("event", "completed"), ("mode", "test"), ("outcome", "queued"), ("type", "annotation")))]
        == 1
    )
    assert samples[(delivery, (("event", "-"), ("mode", "live"), ("outcome", "quarantined"), ("type", "-")))] == 1
    assert sum(v for (name, _), v in samples.items() if name == delivery) == 5
    assert samples[("scb_ack_latency_seconds_count", ())] == 5
    assert samples[("scb_ack_latency_seconds_bucket", (("le", "+Inf"),))] == 5
    assert 0 < samples[("scb_ack_latency_seconds_sum", ())] < 5
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == "scb_ack_latency_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[0][0] == 0.001
    assert samples[("scb_queue_depth", (("queue", "callbacks"),))] == 2
    assert samples[("scb_quarantine_kept", ())] == 1
    assert samples[("scb_workers_alive", (("queue", "callbacks"),))] == 0
    assert samples[("scb_redis_memory_used_bytes", ())] > 0


def test_made_up_types_are_counted_as_other_and_add_no_series(metrics_client: FlaskClient) -> None:
    assert post(metrics_client, load_fixture("categorization"), key=TEST_KEY) == "queued"  # series of a known type
    before = len(scrape(metrics_client))
    for n in range(50):
        body = load_fixture("categorization")
        body["task_id"] = body["task"]["task_id"] = f"made-up-{n}"
        body["task"]["type"] = f"madeup{n}" if n % 2 else f"pipe|type|{n}"
        assert post(metrics_client, body, key=TEST_KEY) == "queued"
    samples = scrape(metrics_client)
    other = (("event", "completed"), ("mode", "test"), ("outcome", "queued"), ("type", "other"))
    assert samples[("scb_deliveries_total", other)] == 50  # the '|' ones too: none dropped
    assert len(samples) <= before + 2
    assert not any("madeup" in value or "pipe" in value for _, labels in samples for _, value in labels)


def test_histograms_become_cumulative_buckets_in_seconds(metrics_client: FlaskClient, redis_conn: redis.Redis) -> None:
    pipe = redis_conn.pipeline()
    for latency_ms in (0.5, 0.9, 4, 4000, 9000):
        stats.apply_now(pipe, stats.ack_latency(latency_ms))
    stats.apply_now(
        pipe,
        stats.merge(
            stats.handler_run("h1", "categorization", "done", 0.002),
            stats.handler_run("h1", "categorization", "failed", 0.3),
            stats.job_outcome("retry"),
            stats.unhandled("lidartopdown", "completed"),
        ),
    )
    pipe.hincrbyfloat(stats.TOTAL_KEY, "brand_new|a|b", 3)
    pipe.execute()
    samples = scrape(metrics_client)
    ack = {dict(labels)["le"]: v for (name, labels), v in samples.items() if name == "scb_ack_latency_seconds_bucket"}
    assert ack["0.001"] == 2 and ack["0.005"] == 3 and ack["2.5"] == 3 and ack["5"] == 4 and ack["+Inf"] == 5
    assert samples[("scb_ack_latency_seconds_sum", ())] == pytest.approx(13.0054)
    assert samples[("scb_handler_duration_seconds_bucket", (("handler", "h1"), ("le", "0.005")))] == 1
    assert samples[("scb_handler_duration_seconds_bucket", (("handler", "h1"), ("le", "0.25")))] == 1
    assert samples[("scb_handler_duration_seconds_bucket", (("handler", "h1"), ("le", "0.5")))] == 2
    assert samples[("scb_handler_duration_seconds_count", (("handler", "h1"),))] == 2
    assert samples[("scb_handler_duration_seconds_sum", (("handler", "h1"),))] == pytest.approx(0.302)
    assert (
        samples[("scb_handler_runs_total", (("handler", "h1"), ("outcome", "failed"), ("type", "categorization")))] == 1
    )
    assert samples[("scb_jobs_total", (("outcome", "retry"),))] == 1
    assert samples[("scb_unhandled_total", (("event", "completed"), ("type", "lidartopdown")))] == 1
    assert samples[("scb_counter_total", (("labels", "a|b"), ("name", "brand_new")))] == 3


def test_gauges_of_the_queue_registries_workers_and_reconciliation(
    metrics_client: FlaskClient, redis_conn: redis.Redis, settings: Settings
) -> None:
    post(metrics_client, load_fixture("categorization"))
    queue = Queue(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    head = redis_conn.lindex(queue.key, 0).decode()
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    redis_conn.hset(f"rq:job:{head}", "enqueued_at", an_hour_ago)
    redis_conn.zadd(f"rq:failed:{settings.callback_queue}", {"j1": 1, "j2": 2})
    redis_conn.zadd(f"rq:scheduled:{settings.callback_queue}", {"j3": 1})
    redis_conn.zadd(f"rq:wip:{settings.callback_queue}", {"j4": 1})
    redis_conn.sadd(f"rq:workers:{settings.callback_queue}", "rq:worker:alive", "rq:worker:dead")
    redis_conn.hset("rq:worker:alive", "state", "idle")
    redis_conn.lpush(
        RUNS_KEY,
        json.dumps({"scope": "p1", "finished_at": "2026-01-01T00:00:00Z", "complete": False, "seen": 9, "queued": 2}),
    )
    redis_conn.lpush(
        RUNS_KEY,
        json.dumps({"scope": "p1", "finished_at": "2026-01-02T00:00:00Z", "complete": True, "seen": 5, "queued": 1}),
    )
    redis_conn.lpush(RUNS_KEY, "not json")
    samples = scrape(metrics_client)
    on_queue = (("queue", "callbacks"),)
    assert 3590 < samples[("scb_queue_oldest_age_seconds", on_queue)] < 3700
    assert samples[("scb_jobs_failed", on_queue)] == 2
    assert samples[("scb_jobs_scheduled", on_queue)] == 1
    assert samples[("scb_jobs_running", on_queue)] == 1
    assert samples[("scb_workers_alive", on_queue)] == 1
    assert samples[("scb_reconcile_last_run_complete", (("scope", "p1"),))] == 1
    assert samples[("scb_reconcile_last_run_tasks", (("outcome", "queued"), ("scope", "p1")))] == 1
    assert (
        samples[("scb_reconcile_last_run_timestamp_seconds", (("scope", "p1"),))]
        == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    )
    # A scrape writes nothing: the dead worker's name is still registered, nothing was cleaned.
    assert redis_conn.sismember(f"rq:workers:{settings.callback_queue}", "rq:worker:dead")
    assert redis_conn.zcard(f"rq:wip:{settings.callback_queue}") == 1


def test_an_empty_queue_has_no_backlog_age(redis_conn: redis.Redis, settings: Settings) -> None:
    snapshot = read_status(redis_conn, settings)
    assert snapshot.depth == 0 and snapshot.oldest_enqueued_at is None and snapshot.counters == {}


def test_redis_down_is_a_503_not_a_500(metrics_client: FlaskClient, redis_server: RedisProcess) -> None:
    redis_server.stop()
    try:
        answer = metrics_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        redis_server.start()
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "store_unavailable"


def test_a_reconciliation_run_is_counted(redis_conn: redis.Redis) -> None:
    from callback_server import stats
    from callback_server.reconcile import RunLog, RunSummary, run_counts

    summary = RunSummary(
        run_id="r",
        started_at="a",
        window_start="b",
        window_end="c",
        scope="kitchen",
        complete=True,
        events={"completed": {"queued": 2, "already_had": 3}, "audit": {"queued": 1}},
    )
    pipe = redis_conn.pipeline()
    RunLog(redis_conn).add(summary, pipe)
    stats.apply_now(pipe, run_counts(summary))
    pipe.execute()
    counts = stats.totals(redis_conn)
    assert counts["reconcile_run|kitchen|complete"] == 1
    assert counts["reconcile_task|completed|queued"] == 2
    assert counts["reconcile_task|completed|already_had"] == 3
    assert counts["reconcile_task|audit|queued"] == 1
    assert RunLog(redis_conn).recent(1)[0].scope == "kitchen"

"""The reconciler against a scripted Scale API (offset-only or token paging, 429s, 5xx) and real Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from callback_server.config import Secret, Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.quarantine import Quarantine
from callback_server.reconcile import Reconciler, RunLog, ScaleAPI
from tests.callback_server.test_ingest import queued_jobs
from tests.conftest import LIVE_KEY, load_fixture

API_KEY = "live_reconcile_key_123"


def completed_task(index: int) -> dict[str, Any]:
    task = load_fixture("categorization")["task"]
    task["task_id"] = f"task{index:05d}"
    return task


class FakeScale:
    """A scripted Scale API: pages of tasks, by offset or by token, with queued failures first."""

    def __init__(self, tasks: list[dict[str, Any]], *, tokens: bool, page_size: int = 3) -> None:
        self.tasks = tasks
        self.tokens = tokens
        self.page_size = page_size
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.requests: list[dict[str, str]] = []
        self.auth: list[str | None] = []
        app = Flask("fake-scale")

        @app.get("/v1/tasks")
        def tasks() -> Any:
            self.requests.append(dict(request.args))
            self.auth.append(request.authorization.username if request.authorization else None)
            if self.failures:
                status, headers = self.failures.pop(0)
                return jsonify(status_code=status, error="scripted"), status, headers
            limit = min(int(request.args.get("limit", 100)), self.page_size)
            start = int(request.args.get("next_token") or request.args.get("offset") or 0)
            docs = self.tasks[start:start + limit]
            more = start + limit < len(self.tasks)
            answer: dict[str, Any] = {"docs": docs, "total": len(self.tasks), "limit": limit, "offset": start,
                                      "has_more": more}
            if self.tokens and more:
                answer["next_token"] = str(start + limit)
            return jsonify(answer)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"


@pytest.fixture
def fake() -> Iterator[FakeScale]:
    scale = FakeScale([completed_task(i) for i in range(8)], tokens=False)
    scale.thread.start()
    yield scale
    scale.server.shutdown()
    scale.server.server_close()


_OPEN: list[Reconciler] = []


@pytest.fixture(autouse=True)
def _close_reconcilers() -> Iterator[None]:
    """Close the API clients' keep-alive connections, or they surface later as ResourceWarnings."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def reconciler_for(fake: FakeScale, settings: Settings, conn: redis.Redis, sleeps: list[float]) -> Reconciler:
    api = ScaleAPI(fake.url, Secret(API_KEY), backoff=0.01, sleep=sleeps.append)
    reconciler = Reconciler(api, DeliveryQueue.from_settings(settings, conn), Quarantine(conn))
    _OPEN.append(reconciler)
    return reconciler


WINDOW = (datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))


@pytest.mark.parametrize("tokens", [False, True], ids=["offset", "next_token"])
def test_follows_every_page_and_queues_each_task_once(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, tokens: bool
) -> None:
    fake.tokens = tokens
    summary = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert summary.complete and summary.errors == []
    assert (summary.seen, summary.queued, summary.already_had) == (8, 8, 0)
    assert len(fake.requests) == 3  # 3 + 3 + 2
    assert fake.requests[0]["status"] == "completed"
    assert fake.requests[0]["start_time"].endswith("Z") and fake.requests[0]["end_time"].endswith("Z")
    if tokens:
        assert [r.get("next_token") for r in fake.requests] == [None, "3", "6"]
    else:
        assert [r.get("offset") for r in fake.requests] == [None, "3", "6"]
    assert fake.auth == [API_KEY] * 3
    jobs = queued_jobs(redis_conn)
    assert sorted(job.args[0]["task_id"] for job in jobs) == [f"task{i:05d}" for i in range(8)]
    assert {job.args[0]["source"] for job in jobs} == {"reconcile"}
    again = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert (again.queued, again.already_had) == (0, 8)
    assert len(queued_jobs(redis_conn)) == 8


def test_a_task_delivered_by_callback_is_not_queued_again(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    task = fake.tasks[0]
    DeliveryQueue.from_settings(settings, redis_conn).accept(
        Delivery.from_body({"task_id": task["task_id"], "response": task["response"], "task": task}, mode="live")
    )
    summary = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert (summary.queued, summary.already_had) == (7, 1)


def test_rate_limits_are_waited_out_with_retry_after(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.failures = [(429, {"Retry-After": "2"}), (429, {}), (429, {"Retry-After": "soon"})]
    sleeps: list[float] = []
    summary = reconciler_for(fake, settings, redis_conn, sleeps).run(*WINDOW)
    assert summary.complete and summary.queued == 8
    assert sleeps == [2.0, 0.02, 0.04]


def test_server_errors_are_retried_then_reported(fake: FakeScale, settings: Settings, redis_conn: redis.Redis) -> None:
    fake.failures = [(502, {}), (500, {})]
    summary = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert summary.complete and summary.queued == 8
    fake.failures = [(503, {})] * 4
    failed = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert not failed.complete
    assert failed.errors == ["GET tasks: HTTP 503 after 4 tries"]
    assert API_KEY not in json.dumps(failed.as_dict())
    (latest, _) = RunLog(redis_conn).recent(2)
    assert latest.complete is False and latest.errors == failed.errors


def test_endless_rate_limiting_gives_up_and_says_so(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.failures = [(429, {"Retry-After": "0"})] * 20
    summary = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert not summary.complete
    assert "still rate limited" in summary.errors[0]


@pytest.mark.parametrize(("status", "message"), [(401, "HTTP 401"), (400, "HTTP 400"), (404, "HTTP 404")])
def test_client_errors_stop_at_once(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, status: int, message: str
) -> None:
    fake.failures = [(status, {})]
    summary = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert not summary.complete and message in summary.errors[0]
    assert len(fake.requests) == 1


def test_unreachable_api_is_reported(settings: Settings, redis_conn: redis.Redis) -> None:
    api = ScaleAPI("http://127.0.0.1:9/v1", Secret(API_KEY), backoff=0.0, sleep=lambda _: None, timeout=1)
    reconciler = Reconciler(api, DeliveryQueue.from_settings(settings, redis_conn), Quarantine(redis_conn))
    _OPEN.append(reconciler)
    summary = reconciler.run(*WINDOW)
    assert not summary.complete
    assert summary.errors == ["GET tasks: unreachable after 4 tries: ConnectionError"]


def test_invalid_tasks_are_quarantined_not_dropped(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.tasks[2]["response"] = {"category": 42}
    fake.tasks[3]["status"] = "pending"
    summary = reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert (summary.queued, summary.quarantined, summary.skipped) == (6, 1, 1)
    (kept,) = Quarantine(redis_conn).recent()
    assert kept.reason == "reconciled task does not match the callback schema"
    assert json.loads(kept.body)["task_id"] == "task00002"


def test_test_mode_tasks_are_marked_test(fake: FakeScale, settings: Settings, redis_conn: redis.Redis) -> None:
    for task in fake.tasks:
        task["is_test"] = True
    reconciler_for(fake, settings, redis_conn, []).run(*WINDOW)
    assert {job.args[0]["mode"] for job in queued_jobs(redis_conn)} == {"test"}


def test_redis_down_mid_run_is_an_incomplete_run(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, redis_server: Any
) -> None:
    reconciler = reconciler_for(fake, replace(settings, redis_timeout=0.2), redis_conn, [])
    redis_server.stop()
    try:
        summary = reconciler.run(*WINDOW)
    finally:
        redis_server.start()
    assert not summary.complete
    assert summary.errors[0].startswith("redis: ")


def test_has_more_with_an_empty_page_is_an_error_not_a_complete_run(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    scale = FakeScale([], tokens=False)
    scale.tasks = []
    app_answers = {"docs": [], "total": 5, "limit": 100, "offset": 0, "has_more": True}
    scale.server.app.view_functions["tasks"] = lambda: app_answers  # type: ignore[attr-defined]
    scale.thread.start()
    try:
        summary = reconciler_for(scale, settings, redis_conn, []).run(*WINDOW)
    finally:
        scale.server.shutdown()
        scale.server.server_close()
    assert not summary.complete
    assert "has_more with an empty page" in summary.errors[0]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "SCALE_API_KEY is not set"),
        (["--since", "yesterday"], {"SCALE_API_KEY": API_KEY}, "not an ISO-8601 time: 'yesterday'"),
        (["--since", "2026-01-02T00:00:00Z", "--hours", "2"], {"SCALE_API_KEY": API_KEY}, "not both"),
        (["--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], {"SCALE_API_KEY": API_KEY},
         "the window is empty"),
        (["--hours", "-1"], {"SCALE_API_KEY": API_KEY}, "-1"),
    ],
)
def test_reconcile_command_rejects_bad_input_before_calling_the_api(
    settings: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch,
    args: list[str], env: dict[str, str], message: str,
) -> None:
    from click.testing import CliRunner

    from callback_server.cli import cli

    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    monkeypatch.setenv("SCALE_API_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("SCALE_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["reconcile", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert RunLog(redis_conn).recent() == []


def test_reconcile_command_reports_an_incomplete_run_and_exits_1(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from callback_server.cli import cli

    fake.failures = [(401, {})]
    for name, value in {"REDIS_URL": settings.redis_url, "SCALE_CALLBACK_AUTH_KEY": LIVE_KEY,
                        "SCALE_API_URL": fake.url, "SCALE_API_KEY": API_KEY}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["reconcile", "--hours", "1"])
    assert result.exit_code == 1
    assert "RECONCILIATION INCOMPLETE" in result.output
    assert "HTTP 401" in result.output
    assert API_KEY not in result.output

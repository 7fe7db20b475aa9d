"""The reconciler against a scripted Scale API and a real Redis.

The scripted API filters as the list API does (update, completion and creation windows with
exclusive bounds, project, status), answers newest *created* first, pages by offset or token,
and fails on command: queued failures, or every request after N pages.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import redis
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from callback_server.config import Secret, Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.exceptions import ConfigError
from callback_server.quarantine import Quarantine
from callback_server.reconcile import (
    ACCOUNT,
    MARKS_KEY,
    RUNS_KEY,
    Marks,
    Reconciler,
    RunLog,
    RunSummary,
)
from callback_server.scale_api import ScaleAPI
from callback_server.times import parse_instant
from tests.support.events import ATTACHMENT_ERROR
from tests.support.fixtures import load_fixture
from tests.support.jobs import queued_jobs

API_KEY = "live_reconcile_key_123"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- tasks in each state, as the list API returns them ----------------------------------------------


def completed_task(
    index: int, *, updated: datetime = NOW - HOUR, created: datetime | None = None, project: str | None = None
) -> dict[str, Any]:
    task = load_fixture("categorization")["task"]
    task.update(
        task_id=f"task{index:05d}",
        created_at=stamp(created or updated - timedelta(minutes=5)),
        completed_at=stamp(updated),
        updated_at=stamp(updated),
        project=project,
        audits=[],
        customer_review_status=None,
    )
    return task


def error_task(index: int, updated: datetime) -> dict[str, Any]:
    task = completed_task(index, updated=updated)
    task.update(
        status="error",
        completed_at=None,
        response=copy.deepcopy(ATTACHMENT_ERROR),
    )
    return task


def audited_task(index: int, completed: datetime, audited: datetime, result: str = "accepted") -> dict[str, Any]:
    task = completed_task(index, updated=completed)
    task["audits"] = [
        {
            "audited_by": "reviewer@example.com",
            "audited_at": stamp(audited),
            "audit_time_secs": 12,
            "audit_result": result,
            "audit_source": "customer",
        }
    ]
    task.update(customer_review_status=result, updated_at=stamp(audited))
    return task


def recalled_task(index: int, completed: datetime, recalled: datetime) -> dict[str, Any]:
    task = completed_task(index, updated=completed)
    task.update(status="pending", response=None, updated_at=stamp(recalled))
    return task


def canceled_task(index: int, updated: datetime) -> dict[str, Any]:
    task = completed_task(index, updated=updated)
    task.update(status="canceled", response=None, completed_at=None)
    return task


def pending_task(index: int, updated: datetime) -> dict[str, Any]:
    task = completed_task(index, updated=updated)
    task.update(status="pending", response=None, completed_at=None)
    return task


def body_of(task: dict[str, Any]) -> dict[str, Any]:
    return {"task_id": task["task_id"], "status": task["status"], "response": task.get("response"), "task": task}


# --- the scripted API -----------------------------------------------------------------------------------


_BOUNDS = {
    "updated_at": ("updated_after", "updated_before"),
    "completed_at": ("completed_after", "completed_before"),
    "created_at": ("start_time", "end_time"),
}


def _matches(task: dict[str, Any], args: dict[str, str]) -> bool:
    """The list API's filters, with exclusive bounds: the reconciler must not rely on inclusive ones."""
    for name, (low, high) in _BOUNDS.items():
        if low not in args and high not in args:
            continue
        value = parse_instant(task.get(name))
        if value is None:
            return False
        if low in args and not value > parse_instant(args[low]):  # type: ignore[operator]
            return False
        if high in args and not value < parse_instant(args[high]):  # type: ignore[operator]
            return False
    if "project" in args and task.get("project") != args["project"]:
        return False
    return "status" not in args or task.get("status") == args["status"]


class FakeScale:
    """A scripted Scale API (see the module docstring)."""

    def __init__(self, tasks: list[dict[str, Any]], *, tokens: bool, page_size: int = 3) -> None:
        self.tasks = tasks
        self.tokens = tokens
        self.page_size = page_size
        self.failures: list[tuple[int, dict[str, str], str]] = []
        self.fail_after_pages: int | None = None
        self.pages_served = 0
        self.requests: list[dict[str, str]] = []
        self.auth: list[str | None] = []
        app = Flask("fake-scale")

        @app.get("/v1/tasks")
        def tasks() -> Any:
            args = dict(request.args)
            self.requests.append(args)
            self.auth.append(request.authorization.username if request.authorization else None)
            if self.failures:
                status, headers, message = self.failures.pop(0)
                return jsonify(status_code=status, error=message), status, headers
            if self.fail_after_pages is not None and self.pages_served >= self.fail_after_pages:
                return jsonify(status_code=503, error="scripted outage"), 503, {}
            self.pages_served += 1
            found = sorted(
                (t for t in self.tasks if _matches(t, args)),
                key=lambda t: (t["created_at"], t["task_id"]),
                reverse=True,
            )
            limit = min(int(args.get("limit", 100)), self.page_size)
            start = int(args.get("next_token") or args.get("offset") or 0)
            docs = found[start : start + limit]
            more = start + limit < len(found)
            answer: dict[str, Any] = {"docs": docs, "total": len(found), "limit": limit, "has_more": more}
            if self.tokens and more:
                answer["next_token"] = str(start + limit)
            return jsonify(answer)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        # A short poll: shutdown() waits up to one poll interval (0.5 s by default) after every test.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"

    def windows(self, low: str = "updated_after") -> list[str]:
        return [r[low] for r in self.requests if low in r]


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


class Clock:
    """Time made to pass without sleeping."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def reconciler_for(
    fake: FakeScale,
    settings: Settings,
    conn: redis.Redis,
    sleeps: list[float] | None = None,
    *,
    deliveries: DeliveryQueue | None = None,
    quarantine: Quarantine | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> Reconciler:
    api = ScaleAPI(
        fake.url, Secret(API_KEY), backoff=0.01, sleep=(sleeps if sleeps is not None else []).append, jitter=lambda: 1.0
    )
    reconciler = Reconciler(
        api,
        deliveries or DeliveryQueue.from_settings(settings, conn),
        quarantine or Quarantine(conn),
        clock=clock or Clock(),
        **options,
    )
    _OPEN.append(reconciler)
    return reconciler


WINDOW = (NOW - 2 * HOUR, NOW)  # one slice


def jobs_by_task(conn: redis.Redis) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for job in queued_jobs(conn):
        found.setdefault(job.args[0]["task_id"], []).append(job.args[0]["event"])
    return found


# --- paging, windows, identity --------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [False, True], ids=["offset", "next_token"])
def test_follows_every_page_and_queues_each_task_once(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, tokens: bool
) -> None:
    fake.tokens = tokens
    summary = reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert summary.complete and summary.errors == []
    assert (summary.seen, summary.queued, summary.already_had) == (8, 8, 0)
    assert summary.events == {"completed": {"queued": 8}}
    assert len(fake.requests) == 3  # 3 + 3 + 2
    first = fake.requests[0]
    assert "status" not in first, "errors, audits and recalls are only seen without a status filter"
    assert "start_time" not in first and "project" not in first
    assert first["updated_after"].endswith("Z") and first["updated_before"].endswith("Z")
    if tokens:
        assert [r.get("next_token") for r in fake.requests] == [None, "3", "6"]
    else:
        assert [r.get("offset") for r in fake.requests] == [None, "3", "6"]
    assert fake.auth == [API_KEY] * 3
    jobs = queued_jobs(redis_conn)
    assert sorted(job.args[0]["task_id"] for job in jobs) == [f"task{i:05d}" for i in range(8)]
    assert {job.args[0]["source"] for job in jobs} == {"reconcile"}
    again = reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert (again.queued, again.already_had) == (0, 8)
    assert again.events == {"completed": {"already_had": 8}}
    assert len(queued_jobs(redis_conn)) == 8


def test_a_task_delivered_by_callback_is_not_queued_again(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    DeliveryQueue.from_settings(settings, redis_conn).accept(Delivery.from_body(body_of(fake.tasks[0]), mode="live"))
    summary = reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert (summary.queued, summary.already_had) == (7, 1)


def test_every_event_whose_callback_was_lost_is_recovered_once_by_one_run(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.tasks = [
        # Created three weeks ago (week urgency, then rework), completed an hour ago: by creation time
        # no window short of three weeks would find it; by update time the first run does.
        completed_task(1, created=NOW - timedelta(days=21), updated=NOW - HOUR),
        error_task(2, NOW - 2 * HOUR),
        audited_task(3, completed=NOW - timedelta(days=5), audited=NOW - 3 * HOUR),
        recalled_task(4, completed=NOW - timedelta(days=2), recalled=NOW - 4 * HOUR),
        canceled_task(5, NOW - 5 * HOUR),
        pending_task(6, NOW - 6 * HOUR),  # waiting for its first completion: no event, nothing owed
    ]
    # The audit's completion was delivered back then; only the audit callback was lost.
    completion = copy.deepcopy(fake.tasks[2])
    completion.update(audits=[], customer_review_status=None, updated_at=completion["completed_at"])
    DeliveryQueue.from_settings(settings, redis_conn).accept(Delivery.from_body(body_of(completion), mode="live"))
    clock = Clock()
    summary = reconciler_for(fake, settings, redis_conn, clock=clock).run_scheduled()
    assert summary.complete, summary.errors
    assert summary.events == {e: {"queued": 1} for e in ("completed", "error", "audit", "recalled", "canceled")}
    assert (summary.seen, summary.queued, summary.skipped) == (6, 5, 1)
    jobs = jobs_by_task(redis_conn)
    assert jobs == {
        "task00001": ["completed"],
        "task00002": ["error"],
        "task00003": ["completed", "audit"],
        "task00004": ["recalled"],
        "task00005": ["canceled"],
    }
    (audit_job,) = [j for j in queued_jobs(redis_conn) if j.args[0]["event"] == "audit"]
    assert audit_job.args[0]["review_status"] == "accepted"
    clock.now += HOUR
    again = reconciler_for(fake, settings, redis_conn, clock=clock).run_scheduled()
    assert again.complete and again.queued == 0 and again.already_had == 5
    assert jobs_by_task(redis_conn) == jobs


def test_a_task_on_a_slice_boundary_is_not_lost_to_exclusive_bounds(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    start = NOW - 4 * HOUR
    fake.tasks = [completed_task(i, updated=start + i * HOUR) for i in range(1, 4)]  # exactly on each boundary
    summary = reconciler_for(fake, settings, redis_conn, slice_seconds=3600).run(start, NOW)
    assert (summary.seen, summary.queued, summary.already_had) == (3, 3, 0)  # listed twice, counted once
    assert len(fake.requests) == 4


# --- scheduled windows and the high-water mark -----------------------------------------------------------


def test_scheduled_runs_start_from_the_look_back_then_from_the_mark_minus_the_overlap(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    clock = Clock()
    options: dict[str, Any] = {"lookback": 6 * 3600, "overlap": 1800, "slice_seconds": 6 * 3600, "clock": clock}
    first = reconciler_for(fake, settings, redis_conn, **options).run_scheduled()
    assert first.complete
    assert first.window_start == stamp(NOW - 6 * HOUR) and first.window_end == stamp(NOW)
    assert any("first run" in note for note in first.notes)
    assert first.scope == "the whole account (SCALE_PROJECTS is unset)"
    assert Marks(redis_conn).get(ACCOUNT) == NOW
    assert set(fake.windows()) == {stamp(NOW - 6 * HOUR - timedelta(milliseconds=1))}

    clock.now = NOW + HOUR
    fake.requests.clear()
    second = reconciler_for(fake, settings, redis_conn, **options).run_scheduled()
    assert second.window_start == stamp(NOW - timedelta(minutes=30)) and second.notes == []
    assert fake.windows("updated_before") == [stamp(NOW + HOUR + timedelta(milliseconds=1))]
    assert Marks(redis_conn).get(ACCOUNT) == NOW + HOUR


def test_a_mark_older_than_dedup_ttl_restarts_from_the_look_back_and_says_what_was_not_checked(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    Marks(redis_conn).advance(ACCOUNT, NOW - timedelta(days=10))
    summary = reconciler_for(fake, settings, redis_conn, lookback=86400, dedup_ttl=7 * 86400).run_scheduled()
    assert summary.complete and summary.window_start == stamp(NOW - timedelta(days=1))
    (gap,) = summary.notes
    assert gap.startswith("GAP (account)") and stamp(NOW - timedelta(days=10)) in gap and "NOT checked" in gap
    assert "RECONCILIATION GAP" in caplog.text
    assert Marks(redis_conn).get(ACCOUNT) == NOW


def test_the_overlap_never_reaches_past_dedup_ttl(fake: FakeScale, settings: Settings, redis_conn: redis.Redis) -> None:
    Marks(redis_conn).advance(ACCOUNT, NOW - timedelta(days=6, hours=23))
    summary = reconciler_for(fake, settings, redis_conn, overlap=25 * 3600, dedup_ttl=7 * 86400).run_scheduled()
    assert summary.window_start == stamp(NOW - timedelta(days=7))
    assert summary.notes == []


def test_a_run_interrupted_after_two_pages_resumes_from_its_mark_and_misses_nothing(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    # Updated over the last four hours, created in the reverse order of their updates, so the API's
    # newest-created-first pages say nothing about how far in update time a run got.
    minutes_ago = [230, 200, 170, 160, 140, 130, 110, 90, 50, 10]
    fake.tasks = [
        completed_task(i, updated=NOW - timedelta(minutes=m), created=NOW - timedelta(days=30, minutes=-i))
        for i, m in enumerate(minutes_ago)
    ]
    fake.page_size = 2
    fake.fail_after_pages = 2
    clock = Clock()
    options: dict[str, Any] = {"lookback": 4 * 3600, "overlap": 600, "slice_seconds": 3600, "clock": clock}
    first = reconciler_for(fake, settings, redis_conn, **options).run_scheduled()
    assert not first.complete
    assert first.errors == ["(account): GET tasks: HTTP 503 after 9 tries"]
    # Page 1 was the whole first slice (4 h to 3 h ago); page 2 the first half of the second slice.
    assert first.queued == 4
    assert Marks(redis_conn).get(ACCOUNT) == NOW - 3 * HOUR
    assert first.reached == {ACCOUNT: stamp(NOW - 3 * HOUR)} and first.scheduled
    assert RunLog(redis_conn).recent(1)[0].complete is False

    fake.fail_after_pages = None
    fake.requests.clear()
    clock.now = NOW + timedelta(minutes=5)
    second = reconciler_for(fake, settings, redis_conn, **options).run_scheduled()
    assert second.complete, second.errors
    assert fake.windows()[0] == stamp(NOW - 3 * HOUR - timedelta(minutes=10, milliseconds=1))
    assert (second.queued, second.already_had) == (6, 2)
    jobs = jobs_by_task(redis_conn)
    assert sorted(jobs) == sorted(t["task_id"] for t in fake.tasks)
    assert all(len(events) == 1 for events in jobs.values())
    assert Marks(redis_conn).get(ACCOUNT) == clock.now


def test_a_manual_sweep_leaves_the_mark_alone(fake: FakeScale, settings: Settings, redis_conn: redis.Redis) -> None:
    reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert redis_conn.hgetall(MARKS_KEY) == {}


@pytest.mark.parametrize(
    ("by", "low", "high"), [("completed", "completed_after", "completed_before"), ("created", "start_time", "end_time")]
)
def test_manual_sweeps_by_completion_and_creation_time(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, by: str, low: str, high: str
) -> None:
    fake.tasks = [completed_task(1, updated=NOW - HOUR), completed_task(2, updated=NOW - timedelta(days=3))]
    summary = reconciler_for(fake, settings, redis_conn).run(NOW - 2 * HOUR, NOW, by=by)
    assert summary.by == by and summary.queued_task_ids == ["task00001"]
    assert low in fake.requests[0] and high in fake.requests[0] and "updated_after" not in fake.requests[0]


# --- projects ----------------------------------------------------------------------------------------------


def test_each_project_is_swept_on_its_own_and_others_are_untouched(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.tasks = [
        completed_task(1, project="kitchen"),
        completed_task(2, project="garden"),
        completed_task(3, project="attic"),
    ]
    summary = reconciler_for(fake, settings, redis_conn, projects=("kitchen", "garden")).run_scheduled()
    assert summary.complete and summary.scope == "projects kitchen, garden"
    assert list(dict.fromkeys(r["project"] for r in fake.requests)) == ["kitchen", "garden"]
    assert sorted(jobs_by_task(redis_conn)) == ["task00001", "task00002"]
    assert set(Marks(redis_conn).all()) == {"kitchen", "garden"}


def test_a_client_error_on_one_project_does_not_blind_the_others(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.tasks = [completed_task(1, project="kitchen"), completed_task(2, project="garden")]
    fake.failures = [(404, {}, "Project 'kitchen' not found")]
    summary = reconciler_for(fake, settings, redis_conn, projects=("kitchen", "garden")).run_scheduled()
    assert not summary.complete
    assert summary.errors == ["kitchen: GET tasks: HTTP 404: Project 'kitchen' not found"]
    assert sorted(jobs_by_task(redis_conn)) == ["task00002"]
    assert set(Marks(redis_conn).all()) == {"garden"}


def test_a_refused_key_stops_the_whole_run(fake: FakeScale, settings: Settings, redis_conn: redis.Redis) -> None:
    fake.failures = [(401, {}, f"Invalid API key {API_KEY}")]
    summary = reconciler_for(fake, settings, redis_conn, projects=("kitchen", "garden")).run_scheduled()
    assert not summary.complete and len(fake.requests) == 1
    assert summary.errors == ["kitchen: GET tasks: HTTP 401: Invalid API key '**********'"]
    assert API_KEY not in json.dumps(summary.as_dict())


# --- retries ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retried_with_exponential_backoff(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    fake.failures = [(status, {}, "busy")] * 3
    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="callback_server.reconcile"):
        summary = reconciler_for(fake, settings, redis_conn, sleeps).run(*WINDOW)
    assert summary.complete and summary.queued == 8
    assert sleeps == [0.01, 0.02, 0.04]
    waits = [r.wait_s for r in caplog.records if hasattr(r, "wait_s")]  # a wait is logged as a wait
    assert waits == ["0.010", "0.020", "0.040"]
    assert not any(hasattr(r, "latency_ms") for r in caplog.records)


def test_retry_after_is_honoured_within_a_bound(fake: FakeScale, settings: Settings, redis_conn: redis.Redis) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake.failures = [
        (429, {"Retry-After": "2"}, ""),
        (503, {"Retry-After": "3600"}, ""),
        (429, {"Retry-After": later}, ""),
        (429, {"Retry-After": "soon"}, ""),
    ]
    sleeps: list[float] = []
    api = ScaleAPI(fake.url, Secret(API_KEY), backoff=0.01, max_backoff=60, sleep=sleeps.append, jitter=lambda: 1.0)
    reconciler = Reconciler(api, DeliveryQueue.from_settings(settings, redis_conn), Quarantine(redis_conn))
    _OPEN.append(reconciler)
    assert reconciler.run(*WINDOW).complete
    assert sleeps[:2] == [2.0, 60.0]
    assert 25 < sleeps[2] <= 30
    assert sleeps[3] == 0.08  # unreadable: the backoff's own wait (fourth retry)


def test_backoff_has_jitter_between_half_and_all_of_the_doubling_wait() -> None:
    draws = iter([0.0, 1.0, 0.5])
    api = ScaleAPI("http://127.0.0.1:9/v1", Secret(API_KEY), backoff=1.0, max_backoff=3.0, jitter=lambda: next(draws))
    try:
        assert [api.wait_before_retry(n, None) for n in (1, 2, 3)] == [0.5, 2.0, 2.25]
    finally:
        api.close()


def test_server_errors_that_do_not_stop_are_reported(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.failures = [(503, {}, "down")] * 9
    failed = reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert not failed.complete
    assert failed.errors == ["(account): GET tasks: HTTP 503 after 9 tries"]
    assert API_KEY not in json.dumps(failed.as_dict())
    (latest,) = RunLog(redis_conn).recent(1)
    assert latest.complete is False and latest.errors == failed.errors


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_stop_at_once_with_the_api_message(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, status: int
) -> None:
    fake.failures = [(status, {}, "Invalid parameter 'updated_after': must be an ISO 8601 date")]
    summary = reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert not summary.complete
    assert summary.errors == [
        f"(account): GET tasks: HTTP {status}: Invalid parameter 'updated_after': must be an ISO 8601 date"
    ]
    assert len(fake.requests) == 1


def test_unreachable_api_is_reported(settings: Settings, redis_conn: redis.Redis) -> None:
    api = ScaleAPI("http://127.0.0.1:9/v1", Secret(API_KEY), backoff=0.0, sleep=lambda _: None, timeout=1, retries=2)
    reconciler = Reconciler(api, DeliveryQueue.from_settings(settings, redis_conn), Quarantine(redis_conn))
    _OPEN.append(reconciler)
    summary = reconciler.run(*WINDOW)
    assert not summary.complete
    assert summary.errors == ["(account): GET tasks: unreachable (ConnectionError) after 3 tries"]


def test_has_more_with_an_empty_page_is_an_error_not_a_complete_run(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    scale = FakeScale([], tokens=False)
    app_answers = {"docs": [], "total": 5, "limit": 100, "offset": 0, "has_more": True}
    scale.server.app.view_functions["tasks"] = lambda: app_answers  # type: ignore[attr-defined]
    scale.thread.start()
    try:
        summary = reconciler_for(scale, settings, redis_conn).run(*WINDOW)
    finally:
        scale.server.shutdown()
        scale.server.server_close()
    assert not summary.complete
    assert "has_more with an empty page" in summary.errors[0]


# --- odd tasks never end the run ------------------------------------------------------------------------------


def test_invalid_and_unknown_tasks_are_quarantined_and_the_run_goes_on(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.tasks[2]["response"] = {"category": 42}
    fake.tasks[3]["status"] = "in_progress"
    fake.tasks[4]["task_id"] = "task\ud800"  # a lone surrogate: JSON can carry it, UTF-8 cannot
    fake.tasks[5]["completed_at"] = "0001-01-01T00:00:00+14:00"  # overflows when made UTC
    summary = reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert summary.complete and summary.errors == []
    assert (summary.seen, summary.queued, summary.quarantined) == (8, 4, 4)
    assert summary.events == {"completed": {"queued": 4, "quarantined": 3}, "unknown": {"quarantined": 1}}
    kept = Quarantine(redis_conn).recent()
    assert {k.reason for k in kept} == {"reconcile: body does not match the callback schema"}
    assert sorted(json.loads(k.body)["task_id"] for k in kept) == ["task00002", "task00003", "task00005", "task\ud800"]


class ExplodingQueue(DeliveryQueue):
    """The accept path failing in a way nobody foresaw, for one task."""

    def accept(self, delivery: Delivery, tally: Any = None) -> bool:
        if delivery.task_id == "task00001":
            raise RuntimeError("something nobody foresaw")
        return super().accept(delivery, tally)


class BrokenQuarantine(Quarantine):
    """A quarantine that cannot keep anything (but Redis is fine)."""

    def keep(self, body: bytes, **kwargs: Any) -> str:
        raise ValueError("cannot keep")


def test_any_exception_for_one_task_quarantines_it_and_the_run_goes_on(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    queue = ExplodingQueue(redis_conn)
    summary = reconciler_for(fake, settings, redis_conn, deliveries=queue).run(*WINDOW)
    assert summary.complete
    assert (summary.queued, summary.quarantined, summary.task_errors) == (7, 1, 0)
    (kept,) = Quarantine(redis_conn).recent()
    assert kept.reason == "reconcile: body passed validation but could not be queued: RuntimeError"
    assert json.loads(kept.body)["task_id"] == "task00001"


def test_a_task_that_cannot_even_be_quarantined_is_counted_and_named(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    fake.tasks[2]["task_id"] = "task\ud800"
    summary = reconciler_for(
        fake, settings, redis_conn, deliveries=ExplodingQueue(redis_conn), quarantine=BrokenQuarantine(redis_conn)
    ).run(*WINDOW)
    assert summary.complete and summary.queued == 6 and summary.task_errors == 2
    assert sorted(summary.errors) == [
        "task task00001: body passed validation but could not be queued: RuntimeError, and not kept: ValueError",
        "task task\\ud800: body does not match the callback schema, and not kept: ValueError",
    ]
    assert summary.events["completed"] == {"queued": 6, "errors": 2}


def test_a_task_that_is_not_an_object_is_quarantined(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis
) -> None:
    answer = {"docs": ["not a task", fake.tasks[0]], "has_more": False}
    fake.server.app.view_functions["tasks"] = lambda: answer  # type: ignore[attr-defined]
    summary = reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert summary.complete and (summary.quarantined, summary.queued) == (1, 1)
    (kept,) = Quarantine(redis_conn).recent()
    assert kept.reason == "reconcile: body does not match the callback schema"


def test_test_mode_tasks_are_marked_test(fake: FakeScale, settings: Settings, redis_conn: redis.Redis) -> None:
    for task in fake.tasks:
        task["is_test"] = True
    reconciler_for(fake, settings, redis_conn).run(*WINDOW)
    assert {job.args[0]["mode"] for job in queued_jobs(redis_conn)} == {"test"}


def test_redis_down_mid_run_is_an_incomplete_run(
    fake: FakeScale, settings: Settings, redis_conn: redis.Redis, redis_server: Any
) -> None:
    reconciler = reconciler_for(fake, replace(settings, redis_timeout=0.2), redis_conn)
    redis_server.stop()
    try:
        summary = reconciler.run(*WINDOW)
    finally:
        redis_server.start()
    assert not summary.complete
    assert summary.errors[0].startswith("redis: ")


def test_the_run_log_reads_summaries_written_before_fields_changed(redis_conn: redis.Redis) -> None:
    old: dict[str, Any] = {
        "run_id": "abc",
        "started_at": "2026-01-01T00:00:00+00:00",
        "window_start": "a",
        "window_end": "b",
        "finished_at": "c",
        "seen": 3,
        "already_had": 1,
        "queued": 2,
        "quarantined": 0,
        "skipped": 0,
        "errors": [],
        "complete": True,
        "queued_task_ids": ["t"],
        "a_field_from_the_future": 1,
    }
    redis_conn.lpush(RUNS_KEY, json.dumps(old))
    (summary,) = RunLog(redis_conn).recent()
    assert summary == RunSummary(**{k: v for k, v in old.items() if k != "a_field_from_the_future"})
    assert summary.events == {} and summary.by == "updated"


# --- configuration -------------------------------------------------------------------------------------------


BASE = {"REDIS_URL": "redis://x", "SCALE_CALLBACK_AUTH_KEY": "a-long-enough-callback-key-0123"}


def test_reconciler_settings() -> None:
    settings = Settings.from_env({**BASE, "SCALE_PROJECTS": " kitchen, garden ,,", "RECONCILE_OVERLAP": "0"})
    assert settings.scale_projects == ("kitchen", "garden")
    assert (settings.reconcile_lookback, settings.reconcile_overlap) == (172800, 0)
    assert Settings.from_env(BASE).reconcile_overlap == 25 * 3600


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECONCILE_LOOKBACK": "999999999"}, "RECONCILE_LOOKBACK (999999999) must not exceed DEDUP_TTL (172800)"),
        (
            {"RECONCILE_LOOKBACK": "7200", "RECONCILE_OVERLAP": "7201"},
            "RECONCILE_OVERLAP (7201) must not exceed RECONCILE_LOOKBACK (7200)",
        ),
        ({"RECONCILE_OVERLAP": "-1"}, "RECONCILE_OVERLAP must be at least 0"),
        ({"RECONCILE_LOOKBACK": "1d"}, "RECONCILE_LOOKBACK must be a whole number"),
        ({"RECONCILE_WINDOW": "3600"}, "RECONCILE_WINDOW is no longer read: it was renamed RECONCILE_LOOKBACK"),
        ({"SCALE_PROJECTS": "a,b,a"}, "SCALE_PROJECTS names a project twice"),
        ({"SCALE_PROJECTS": "a\x07b"}, "SCALE_PROJECTS holds a project name with control characters"),
    ],
)
def test_bad_reconciler_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, **env})
    assert message in str(raised.value)


# --- the command -------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "REDIS_URL": settings.redis_url,
        "SCALE_CALLBACK_AUTH_KEY": BASE["SCALE_CALLBACK_AUTH_KEY"],
        "SCALE_API_URL": "http://127.0.0.1:9/v1",
        "SCALE_API_KEY": API_KEY,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("SCALE_PROJECTS", "RECONCILE_LOOKBACK", "RECONCILE_WINDOW", "RECONCILE_OVERLAP"):
        monkeypatch.delenv(name, raising=False)
    return env


def invoke(*args: str) -> Any:
    from click.testing import CliRunner

    from callback_server.cli import cli

    return CliRunner().invoke(cli, ["reconcile", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not an ISO-8601 time: 'yesterday'"),
        (["--since", "2026-01-02T00:00:00Z", "--hours", "2"], "not both"),
        (["--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"], "the window is empty"),
        (["--hours", "-1"], "-1"),
        (["--until", "2026-01-01T00:00:00Z"], "--since is required with its --until"),
        (["--completed-until", "2026-01-01T00:00:00Z"], "--completed-since is required"),
        (["--created-since", "soon"], "not an ISO-8601 time: 'soon'"),
        (["--completed-since", "2026-01-01T00:00:00Z", "--since", "2026-01-01T00:00:00Z"], "give one window"),
        (["--created-since", "2026-01-01T00:00:00Z", "--hours", "1"], "give one window"),
        (["--hours", "1", "--schedule"], "give no window with it"),
    ],
)
def test_reconcile_command_rejects_bad_input_before_calling_the_api(
    cli_env: dict[str, str], redis_conn: redis.Redis, args: list[str], message: str
) -> None:
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert RunLog(redis_conn).recent() == []


def test_reconcile_command_needs_an_api_key(
    cli_env: dict[str, str], redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCALE_API_KEY")
    result = invoke()
    assert result.exit_code != 0 and "SCALE_API_KEY is not set" in result.output


def test_reconcile_command_runs_the_scheduled_window_and_prints_counts_by_event(
    fake: FakeScale, cli_env: dict[str, str], redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    fake.tasks = [
        completed_task(1, updated=now - HOUR, project="kitchen"),
        error_task(2, now - HOUR),
        completed_task(3, updated=now - HOUR, project="attic"),
    ]
    fake.tasks[1]["project"] = "garden"
    monkeypatch.setenv("SCALE_API_URL", fake.url)
    monkeypatch.setenv("SCALE_PROJECTS", "kitchen,garden")
    result = invoke()
    assert result.exit_code == 0, result.output
    assert "window (updated)" in result.output and "seen 2, already had 0, queued 2, quarantined 0" in result.output
    assert "scope: projects kitchen, garden" in result.output
    assert "  completed: queued 1\n" in result.output and "  error: queued 1\n" in result.output
    assert "note: kitchen: first run" in result.output
    assert set(Marks(redis_conn).all()) == {"kitchen", "garden"}
    only = invoke("--project", "attic", "--hours", "2")
    assert only.exit_code == 0 and "queued task00003" in only.output and "scope: projects attic" in only.output
    runs = invoke("runs")
    assert runs.output.count("complete") == 2 and "[projects kitchen, garden]" in runs.output
    assert API_KEY not in result.output + only.output + runs.output


def test_reconcile_command_sweeps_by_completion_time(
    fake: FakeScale, cli_env: dict[str, str], redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALE_API_URL", fake.url)
    result = invoke("--completed-since", stamp(datetime.now(UTC) - timedelta(days=2)))
    assert result.exit_code == 0, result.output
    assert "window (completed)" in result.output
    assert "completed_after" in fake.requests[0] and "updated_after" not in fake.requests[0]
    assert redis_conn.hgetall(MARKS_KEY) == {}


def test_reconcile_command_reports_an_incomplete_run_and_exits_1_without_the_key(
    fake: FakeScale,
    cli_env: dict[str, str],
    redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    fake.failures = [(401, {}, f"bad key {API_KEY}")]
    monkeypatch.setenv("SCALE_API_URL", fake.url)
    result = invoke("--hours", "1")
    assert result.exit_code == 1
    assert "RECONCILIATION INCOMPLETE" in result.output
    assert "HTTP 401: bad key '**********'" in result.output
    assert "the scheduled mark was left alone" in result.output
    assert API_KEY not in result.output + "".join(capfd.readouterr())

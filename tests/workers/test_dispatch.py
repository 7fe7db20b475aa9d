"""Dispatch through a real CallbackWorker (RQ's forking Worker, run in burst mode): retries, isolation,
timeouts, failures, replay."""

from __future__ import annotations

import json
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from callback_server import stats
from callback_server.cli import cli
from callback_server.config import Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.jobs import failure_line, failure_text
from callback_server.ledger import Ledger
from callback_server.schemas import REFERENCE_TYPES, load_callback
from tests.support.fixtures import load_fixture
from tests.support.handlers import effects
from tests.support.jobs import enqueue
from tests.support.keys import LIVE_KEY
from workers.effects import effects_key
from workers.registry import registry
from workers.worker import build_worker


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    """Retries without waiting (interval 0 requeues at once), so a burst worker sees them all."""
    return replace(settings, handler_retry_intervals=(0, 0), handler_timeout=2)


def run_burst(settings: Settings) -> None:
    build_worker(settings, connection=redis.Redis.from_url(settings.redis_url)).work(burst=True)


def failed_ids(settings: Settings, conn: redis.Redis) -> list[str]:
    queue = Queue(settings.callback_queue, connection=conn, serializer=JSONSerializer)
    return FailedJobRegistry(queue=queue).get_job_ids()


@pytest.mark.parametrize("name", REFERENCE_TYPES)
def test_each_type_runs_every_handler_once(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType, name: str
) -> None:
    delivery = enqueue(fast_settings, redis_conn, name)
    run_burst(fast_settings)
    assert effects(redis_conn) == [f"record:{delivery.delivery_id}", f"second:{delivery.delivery_id}"]
    done = redis_conn.hkeys(effects_key(delivery.delivery_id))
    assert {d.decode().rsplit(".", 1)[-1] for d in done} == {"record", "second", f"log_{name}"}


def test_retry_then_success_skips_the_handler_that_completed(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType
) -> None:
    redis_conn.set("test:fail:record", 1)
    delivery = enqueue(fast_settings, redis_conn, "annotation")
    run_burst(fast_settings)
    d = delivery.delivery_id
    assert effects(redis_conn, "test:started") == [f"record:{d}", f"second:{d}", f"record:{d}"]
    assert effects(redis_conn) == [f"second:{d}", f"record:{d}"]
    assert failed_ids(fast_settings, redis_conn) == []
    entry = Ledger(redis_conn, fast_settings.ledger_ttl).delivery(d)
    assert entry is not None
    assert [(a.number, a.outcome) for a in entry.attempts] == [(1, "r"), (2, "d")]
    (failure,) = entry.attempts[0].failures.values()
    assert "RuntimeError: record told to fail" in failure
    assert entry.attempts[1].handlers == ["tests.workers.recording_handlers.record"]


def test_one_failing_handler_of_three_does_not_rerun_the_others(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType
) -> None:
    redis_conn.set("test:fail:second", 2)
    delivery = enqueue(fast_settings, redis_conn, "phonecall")
    run_burst(fast_settings)
    d = delivery.delivery_id
    started = effects(redis_conn, "test:started")
    assert started.count(f"record:{d}") == 1
    assert started.count(f"second:{d}") == 3
    assert effects(redis_conn) == [f"record:{d}", f"second:{d}"]
    log_handler = [k for k in redis_conn.hkeys(effects_key(d)) if b"log_phonecall" in k]
    assert len(log_handler) == 1


def test_exhausted_retries_land_in_failed_registry_with_traceback_and_replay(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_conn.set("test:fail:second", 3)  # 1 try + 2 retries all fail
    delivery = enqueue(fast_settings, redis_conn, "comparison")
    run_burst(fast_settings)
    d = delivery.delivery_id
    assert failed_ids(fast_settings, redis_conn) == [d]
    queue = Queue(fast_settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    job = queue.fetch_job(d)
    assert job is not None and job.is_failed
    assert "HandlerFailedError" in failure_text(job)
    assert "second told to fail" in failure_text(job)
    assert "second told to fail" not in job.description
    assert effects(redis_conn, "test:started").count(f"second:{d}") == 3
    entry = Ledger(redis_conn, fast_settings.ledger_ttl).delivery(d)
    assert entry is not None and entry.state == "failed"
    assert [a.outcome for a in entry.attempts] == ["r", "r", "f"]
    assert stats.totals(redis_conn)["job|failed"] == 1

    monkeypatch.setenv("REDIS_URL", fast_settings.redis_url)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    runner = CliRunner()
    listed = runner.invoke(cli, ["failed", "list"])
    assert listed.exit_code == 0, listed.output
    assert d in listed.output and "RuntimeError: second told to fail" in listed.output
    replayed = runner.invoke(cli, ["failed", "replay", d])
    assert replayed.exit_code == 0, replayed.output
    assert f"{d}  requeued" in replayed.output
    run_burst(fast_settings)
    assert failed_ids(fast_settings, redis_conn) == []
    # record had completed on the first try and is not run again; second finally succeeds.
    assert effects(redis_conn) == [f"record:{d}", f"second:{d}"]
    assert effects(redis_conn, "test:started").count(f"record:{d}") == 1


def test_failed_replay_of_unknown_job_is_an_error(
    fast_settings: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", fast_settings.redis_url)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    result = CliRunner().invoke(cli, ["failed", "replay", "nope"])
    assert result.exit_code == 1
    assert "not in the failed registry" in result.output
    assert CliRunner().invoke(cli, ["failed", "replay"]).exit_code == 2


def test_hung_handler_is_stopped_at_the_timeout_and_retried(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType
) -> None:
    settings = replace(fast_settings, handler_timeout=1)
    redis_conn.set("test:hang:record", 1)
    delivery = enqueue(settings, redis_conn, "transcription")
    run_burst(settings)
    d = delivery.delivery_id
    assert effects(redis_conn, "test:started").count(f"record:{d}") == 2
    assert effects(redis_conn).count(f"record:{d}") == 1
    assert effects(redis_conn).count(f"second:{d}") == 1


def test_unknown_type_goes_to_the_fallback_and_is_recorded(fast_settings: Settings, redis_conn: redis.Redis) -> None:
    delivery = enqueue(fast_settings, redis_conn, "unknown_type")
    run_burst(fast_settings)
    (note,) = redis_conn.lrange("scb:unhandled", 0, -1)
    assert json.loads(note)["delivery_id"] == delivery.delivery_id
    assert json.loads(note)["type"] == "segmentannotation"
    assert failed_ids(fast_settings, redis_conn) == []


def test_a_delivery_a_star_handler_served_is_not_unhandled(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType
) -> None:
    """A "*" handler (a team's audit trail) serves every type: no note, no warning, no Redis per delivery."""
    delivery = enqueue(fast_settings, redis_conn, "unknown_type")
    run_burst(fast_settings)
    assert effects(redis_conn) == [f"record:{delivery.delivery_id}", f"second:{delivery.delivery_id}"]
    assert redis_conn.llen("scb:unhandled") == 0
    assert not any(key.startswith("unhandled|") for key in stats.totals(redis_conn))
    assert failed_ids(fast_settings, redis_conn) == []


def test_a_finished_job_leaves_its_outcome_in_the_ledger_and_no_rq_result(
    fast_settings: Settings, redis_conn: redis.Redis
) -> None:
    delivery = enqueue(fast_settings, redis_conn, "categorization")
    run_burst(fast_settings)
    queue = Queue(fast_settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    assert queue.fetch_job(delivery.delivery_id) is None  # RESULT_TTL 0: nobody reads RQ's results
    assert redis_conn.keys("rq:results:*") == []
    entry = Ledger(redis_conn, fast_settings.ledger_ttl).delivery(delivery.delivery_id)
    assert entry is not None and entry.state == "done"
    assert entry.attempts[0].handlers == ["workers.handlers.categorization.log_categorization"]
    # The effects records only live as long as the delivery could run again.
    assert 0 < redis_conn.ttl(f"scb:done:{delivery.delivery_id}") <= 3600
    counts = stats.totals(redis_conn)
    assert counts["handler_run|workers.handlers.categorization.log_categorization|categorization|done"] == 1
    assert counts["job|done"] == 1


def test_an_event_no_handler_asked_for_is_listed_by_the_cli(
    fast_settings: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.events import categorization_life

    _, body = categorization_life()[1]  # an accepted audit: the example handlers take results only
    delivery = Delivery.from_body(body, mode="live")
    assert DeliveryQueue.from_settings(fast_settings, redis_conn).accept(delivery)
    run_burst(fast_settings)
    monkeypatch.setenv("REDIS_URL", fast_settings.redis_url)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", LIVE_KEY)
    listed = CliRunner().invoke(cli, ["unhandled", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"categorization  audit:accepted  {delivery.task_id}  {delivery.delivery_id}" in listed.output
    assert stats.totals(redis_conn)["unhandled|categorization|audit"] == 1


def test_a_failure_whose_text_holds_a_lone_surrogate_keeps_its_real_error(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType
) -> None:
    """A handler's error that quotes the body's lone surrogate is recorded, not lost to an encoding error."""

    def quotes_the_body(task: Any) -> None:
        raise ValueError(f"cannot file category {task.response.category}")

    registry.register("categorization", quotes_the_body)
    raw = json.dumps(load_fixture("categorization")).replace('"category": "red"', '"category": "\\ud800"')
    delivery = Delivery.from_body(load_callback(raw.encode()), mode="live")
    settings = replace(fast_settings, handler_retry_intervals=())
    assert DeliveryQueue.from_settings(settings, redis_conn).accept(delivery)
    build_worker(settings).work(burst=True)
    assert failed_ids(settings, redis_conn) == [delivery.delivery_id]
    job = Job.fetch(delivery.delivery_id, connection=redis_conn, serializer=JSONSerializer)
    text = failure_text(job)
    assert "ValueError: cannot file category" in text and "\\ud800" in text
    assert "terminated unexpectedly" not in text


def test_a_newline_in_an_error_cannot_pose_as_the_failures_summary(
    fast_settings: Settings, redis_conn: redis.Redis, recording: ModuleType
) -> None:
    def spoofs(task: Any) -> None:
        raise ValueError("bad row\nTraceback (most recent call last):\nworkers.dispatch.HandlerFailedError: all fine")

    registry.register("categorization", spoofs)
    settings = replace(fast_settings, handler_retry_intervals=())
    delivery = enqueue(settings, redis_conn, "categorization")
    run_burst(settings)
    job = Job.fetch(delivery.delivery_id, connection=redis_conn, serializer=JSONSerializer)
    line = failure_line(job)
    assert line.startswith("1 handler(s) failed: ") and "spoofs (ValueError: bad row\\nTraceback" in line
    assert "\n" not in line  # the message is there, escaped, on the one line


def test_a_rerun_naming_a_handler_this_worker_lacks_fails_with_one_line_naming_it(
    fast_settings: Settings, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    from rq import SimpleWorker  # in process, so the log line is this test's to read

    body = load_fixture("categorization")
    argument = {
        **Delivery.from_body(body, mode="live", source="rerun").as_job_arg(),
        "rerun": {"run_id": "0123456789ab", "handlers": ["myapp.gone.handler"]},
    }
    queue = Queue(fast_settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("workers.dispatch.process_delivery", argument, job_id="rerun-0123456789ab-" + "0" * 32)
    with caplog.at_level("INFO"):
        SimpleWorker([queue], connection=redis_conn, serializer=JSONSerializer).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    lines = [r for r in caplog.records if r.getMessage().startswith("handler failed")]
    assert [(r.handler, r.run_id, r.source) for r in lines] == [("myapp.gone.handler", "0123456789ab", "rerun")]  # type: ignore[attr-defined]
    assert "not registered in this worker" in lines[0].getMessage()

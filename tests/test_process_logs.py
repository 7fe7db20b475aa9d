"""Every process of the Procfile and of `make run` logs in one format, cleanly, from start to stop.

Each process is started as the Procfile (or `python -m callback_server dev`) starts it, does some
work, is stopped with SIGTERM, and its whole output is read back: no ``--- Logging error ---``,
no traceback, and every line a strict logfmt line (or a JSON object with LOG_FORMAT=json). The
last test drives a known sequence through two gunicorn workers and two worker processes and
reads /metrics.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from callback_server import stats
from callback_server.embedded import RedisProcess, free_port
from tests.support.fixtures import load_fixture
from tests.support.http import answers, post_callback
from tests.support.logfmt import parse
from tests.support.processes import child_env, dev_args, gunicorn, process, stack_env, wait_for, worker_args

pytestmark = pytest.mark.slow

METRICS_TOKEN = "metrics-token-0123456789abcdef"

DEV_BANNER = (
    "embedded redis ",
    "                 redis-server ",
    "callback key ",
    "test callback key ",
    "receiver ",
    "scale simulator ",
    "scale api key ",
    "reloader ",
    "Ctrl-C stops everything.",
)
"""The lines `python -m callback_server dev` itself prints for the person at the terminal (not log lines)."""


def read_lines(log: Path, log_format: str) -> list[dict[str, Any]]:
    """Every line of a process's output as fields; fails on a logging error, a traceback or a line of another format."""
    text = log.read_text(encoding="utf-8")
    assert "Logging error" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if line]
    assert lines, f"{log.name} printed nothing"
    return [_fields(line, log_format) for line in lines]


def _fields(line: str, log_format: str) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(line) if log_format == "json" else parse(line)
    assert isinstance(fields, dict), line
    assert {"time", "level", "logger", "msg"} <= set(fields), line
    return fields


def post(base: str, body: object, request_id: str | None = None) -> requests.Response:
    return post_callback(base, body, request_id=request_id)


def counter(conn: redis.Redis, field: str) -> float:
    return stats.totals(conn).get(field, 0.0)


def acks(conn: redis.Redis) -> float:
    """Answers whose latency is counted: the sum of the ack histogram's buckets."""
    return sum(value for name, value in stats.totals(conn).items() if name.startswith("ack_bucket|"))


def logged(log: Path, needle: str) -> Callable[[], bool]:
    return lambda: needle in log.read_text(encoding="utf-8")


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_every_procfile_process_starts_works_and_stops_with_clean_lines(
    tmp_path: Path, redis_conn: redis.Redis, redis_server: RedisProcess, log_format: str
) -> None:
    sim_port, web_port = free_port(), free_port()
    env = stack_env(
        redis_server.url,
        LOG_FORMAT=log_format,
        WORKER_PROCESSES="2",
        SCALE_API_KEY="test_clock_key",
        SCALE_API_URL=f"http://127.0.0.1:{sim_port}/v1",
    )
    sim_env = child_env(PORT=str(sim_port), SCALE_SIM_DATA=str(tmp_path / "sim.sqlite3"), LOG_FORMAT=log_format)
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker", "clock", "sim")}
    clock = [sys.executable, "-m", "callback_server", "reconcile", "--schedule"]
    sim = [sys.executable, "-m", "scale_sim"]
    nasty = load_fixture("categorization")
    nasty["task_id"] = 'evil\nlevel=error msg="forged" task_id=x \\ "'
    nasty["task"]["task_id"] = nasty["task_id"]
    with process(sim, sim_env, logs["sim"]), gunicorn(env, web_port, logs["web"]) as base:
        with process(worker_args(), env, logs["worker"]):
            assert post(base, load_fixture("categorization"), request_id="router-id-0123456789abcdef").json() == {
                "status": "queued"
            }
            assert post(base, nasty).json() == {"status": "queued"}
            wait_for(lambda: counter(redis_conn, "job|done") == 2, timeout=60, what="both deliveries handled")
            wait_for(logged(logs["sim"], "listening on"), what="the simulator")
            with process(clock, env, logs["clock"]):
                wait_for(logged(logs["clock"], "reconciliation done"), timeout=60, what="a reconciliation run")
    web = read_lines(logs["web"], log_format)
    worker = read_lines(logs["worker"], log_format)
    clock_lines = read_lines(logs["clock"], log_format)
    sim_lines = read_lines(logs["sim"], log_format)
    # gunicorn's own lines went through our formatter, from boot to shutdown.
    gunicorn_messages = [f["msg"] for f in web if f["logger"] == "gunicorn.error"]
    assert any(m.startswith("Booting worker") for m in gunicorn_messages)
    assert "Shutting down: Master" in gunicorn_messages
    assert not any(f["logger"] == "gunicorn.access" for f in web)  # the router logs requests; gunicorn does not
    # The router's id is in the ack line and in the worker's lines for that delivery.
    [ack] = [f for f in web if f.get("request_id") == "router-id-0123456789abcdef"]
    assert ack["outcome"] == "queued" and ack["task_id"] == load_fixture("categorization")["task_id"]
    handled = [f for f in worker if f.get("request_id") == "router-id-0123456789abcdef"]
    assert handled and all(f["delivery_id"] == ack["delivery_id"] for f in handled)
    # A forged task id stays one value of one line, in both processes.
    assert [f["task_id"] for f in web if f.get("outcome") == "queued" and f["task_id"].startswith("evil")] == [
        nasty["task_id"]
    ]
    assert all(f["level"] != "error" for f in web + worker)
    assert any(f["task_id"] == nasty["task_id"] for f in worker if "task_id" in f)
    # RQ's own lines (the pool's) are in the format too.
    assert any(f["logger"].startswith("rq.") for f in worker)
    assert any(f["msg"] == "reconciliation done" for f in clock_lines)
    assert any(f["logger"] == "scale_sim" and f["msg"] == "stopped" for f in sim_lines)


def test_make_run_prints_its_banner_then_only_clean_log_lines(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    args = dev_args(port, sim_port, tmp_path / "var")
    log = tmp_path / "dev.log"
    with process(args, child_env(), log) as dev:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/readyz"), timeout=60, what="the receiver")
        wait_for(lambda: answers(f"http://127.0.0.1:{sim_port}/"), timeout=60, what="the simulator")
        body = load_fixture("categorization")
        answer = requests.post(
            f"{base}/callback",
            data=json.dumps(body),
            timeout=10,
            headers={"scale-callback-auth": "local-dev-callback-key", "Content-Type": "application/json"},
        )
        assert answer.json() == {"status": "queued"}
        wait_for(logged(log, f"categorization {body['task_id']}: red"), timeout=30, what="the worker's line")
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=60) == 0
    text = log.read_text(encoding="utf-8")
    assert "Logging error" not in text and "Traceback" not in text, text[-3000:]
    banner = [line for line in text.splitlines() if line.startswith(DEV_BANNER)]
    rest = [line for line in text.splitlines() if line and not line.startswith(DEV_BANNER)]
    assert len(banner) >= 4
    fields = [_fields(line, "logfmt") for line in rest]
    loggers = {f["logger"].split(".")[0] for f in fields}
    assert {"gunicorn", "callback_server", "workers", "scale_sim"} <= loggers


def test_metrics_count_exactly_what_happened_across_two_web_and_two_worker_processes(
    tmp_path: Path, redis_conn: redis.Redis, redis_server: RedisProcess
) -> None:
    env = stack_env(redis_server.url, METRICS_TOKEN=METRICS_TOKEN, WORKER_PROCESSES="2", WEB_CONCURRENCY="2")
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with gunicorn(env, free_port(), tmp_path / "web.log") as base, process(worker_args(), env, tmp_path / "worker.log"):
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 401
        wait_for(lambda: redis_conn.scard("rq:workers:callbacks") == 2, timeout=30, what="two worker processes")
        first, second = load_fixture("categorization"), load_fixture("categorization")
        second["task_id"] = second["task"]["task_id"] = "second-task"
        assert post(base, first).json() == {"status": "queued"}
        assert post(base, first).json() == {"status": "duplicate"}
        assert post(base, "{not json").json() == {"status": "quarantined"}
        redis_conn.set("test:fail:record", 1)  # the second delivery's first try fails, its retry succeeds
        assert post(base, second).json() == {"status": "queued"}
        wait_for(lambda: counter(redis_conn, "job|done") == 2, timeout=60, what="both deliveries done")
        redis_server.stop()
        try:
            outage = post(base, load_fixture("annotation"))
        finally:
            redis_server.start()
        assert outage.status_code == 503
        redis_conn = redis.Redis.from_url(redis_server.url)
        wait_for(
            lambda: counter(redis_conn, "delivery|unavailable|-|-|live") == 1,
            timeout=20,
            what="the 503 counted once Redis is back",
        )
        # Each web process sends what it learnt after an answer (its latency) with its next write or
        # its once-a-second flush: wait until both have, or a scrape may land between two flushes.
        wait_for(lambda: acks(redis_conn) == 4, timeout=20, what="every ack's latency counted")
        scrapes = [requests.get(f"{base}/metrics", headers=auth, timeout=10) for _ in range(6)]
    assert all(s.status_code == 200 for s in scrapes)
    # Whichever gunicorn process answered, the numbers are the same: they are Redis's, not a process's.
    bodies = [_without_gauges(s.text) for s in scrapes]
    assert all(b == bodies[0] for b in bodies)
    samples = _samples(scrapes[-1].text)
    live = 'event="completed",mode="live"'
    assert samples[f'scb_deliveries_total{{{live},outcome="queued",type="categorization"}}'] == 2
    assert samples[f'scb_deliveries_total{{{live},outcome="duplicate",type="categorization"}}'] == 1
    assert samples['scb_deliveries_total{event="-",mode="live",outcome="quarantined",type="-"}'] == 1
    assert samples['scb_deliveries_total{event="-",mode="live",outcome="unavailable",type="-"}'] == 1
    assert sum(v for k, v in samples.items() if k.startswith("scb_deliveries_total")) == 5
    assert samples["scb_ack_latency_seconds_count"] == 4  # the 503 is not an ack
    record = "tests.workers.recording_handlers.record"
    second_handler = "tests.workers.recording_handlers.second"
    assert samples[f'scb_handler_runs_total{{handler="{record}",outcome="failed",type="categorization"}}'] == 1
    assert samples[f'scb_handler_runs_total{{handler="{record}",outcome="done",type="categorization"}}'] == 2
    assert samples[f'scb_handler_runs_total{{handler="{second_handler}",outcome="done",type="categorization"}}'] == 2
    assert samples[f'scb_handler_duration_seconds_count{{handler="{record}"}}'] == 3
    assert samples['scb_jobs_total{outcome="done"}'] == 2
    assert samples['scb_jobs_total{outcome="retry"}'] == 1
    assert samples.get('scb_jobs_total{outcome="failed"}', 0) == 0
    assert samples['scb_queue_depth{queue="callbacks"}'] == 0
    assert samples["scb_quarantine_kept"] == 1


def _samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _without_gauges(text: str) -> str:
    """The counters and histograms of an exposition (gauges such as Redis memory move between scrapes)."""
    kept = ("scb_deliveries", "scb_ack", "scb_handler", "scb_jobs_total", "scb_unhandled")
    return "\n".join(line for line in text.splitlines() if line.startswith(kept))

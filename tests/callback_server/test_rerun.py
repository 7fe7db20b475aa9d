"""``rerun`` against the simulator: two projects, three handlers, the real command, an inline worker.

Each test lists tasks from the simulator (every callback dropped), runs the real
``python -m callback_server rerun`` (which imports CALLBACK_HANDLERS to check the names), and runs
the queued jobs with RQ's SimpleWorker in this process, whose registry has the same handlers.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
import requests
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from callback_server import ledger, stats
from callback_server.accept import callback_body
from callback_server.config import Secret, Settings
from callback_server.deliveries import Delivery, DeliveryQueue, seen_period_key
from callback_server.embedded import RedisProcess
from callback_server.exceptions import RerunError
from callback_server.ledger import Ledger
from callback_server.rerun import (
    COMPLETE,
    RERUNS_KEY,
    Run,
    RunStore,
    Selection,
    build_rerunner,
    marks_key,
    named_handlers,
    new_run,
    request_run,
)
from callback_server.rerun_cli import ProgressBar
from callback_server.scale_api import ScaleAPI
from callback_server.times import parse_instant
from callback_server.web.metrics import counter_families
from scale_sim.ratelimit import RateLimiter
from tests.support.processes import ROOT, kill_tree, process, run_cli, stack_env, wait_for
from tests.support.settings import make_settings
from tests.support.sims import Sim, dropping_sim, make_tasks
from workers.registry import registry

API_KEY = "live_rerun_simulator_key"
HANDLERS = "tests.workers.rerun_handlers"
STORE = f"{HANDLERS}.store_boxes"
LABEL = f"{HANDLERS}.label_items"
ERRORS = f"{HANDLERS}.report_errors"
RUNS = "test:rerun"
SUMMARY = re.compile(
    r"rerun ([0-9a-f]{12}): listed (\d+), queued (\d+), skipped (\d+) "
    r"\(no named handler asks for its type and event\)"
)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    with dropping_sim(tmp_path, API_KEY) as simulator:
        yield simulator


@pytest.fixture
def handlers() -> Iterator[ModuleType]:
    """The three rerun handlers, registered in this process (for the inline worker) for this test only."""
    saved = registry.snapshot()
    loaded = sys.modules.get(HANDLERS)
    module = importlib.reload(loaded) if loaded is not None else importlib.import_module(HANDLERS)
    yield module
    registry.restore(saved)


@pytest.fixture
def settings(redis_server: RedisProcess, redis_conn: redis.Redis, sim: Sim) -> Settings:
    return replace(make_settings(redis_server.url), scale_api_key=Secret(API_KEY), scale_api_url=sim.server.api_url)


def env_for(redis_server: RedisProcess, sim: Sim, **extra: str) -> dict[str, str]:
    return stack_env(
        redis_server.url, CALLBACK_HANDLERS=HANDLERS, SCALE_API_URL=sim.server.api_url, SCALE_API_KEY=API_KEY, **extra
    )


def rerun(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], re.Match[str]]:
    """The real command; its output, and its last line read as the summary."""
    done = run_cli(env, "rerun", *args)
    lines = done.stdout.strip().splitlines()
    summary = SUMMARY.fullmatch(lines[-1]) if lines else None
    assert summary is not None, done.stdout + done.stderr
    return done, summary


def counts(summary: re.Match[str]) -> tuple[int, int, int]:
    return int(summary[2]), int(summary[3]), int(summary[4])


def drain(conn: redis.Redis) -> None:
    """Run every queued job with RQ's SimpleWorker, here (the handlers' registry is this process's)."""
    ledger.register_handlers(conn, registry.names())  # as `python -m workers` does at start
    queue = Queue("callbacks", connection=conn, serializer=JSONSerializer)
    SimpleWorker([queue], connection=conn, serializer=JSONSerializer).work(burst=True)


def runs(conn: redis.Redis) -> list[tuple[str, ...]]:
    """(handler, task id, delivery id, source, event) of every handler run, in order."""
    return [tuple(item.decode().split("|")) for item in conn.lrange(RUNS, 0, -1)]


def deliver(settings: Settings, conn: redis.Redis, task: dict[str, Any]) -> str:
    """The task's callback, accepted as if it had arrived: the original delivery; its id."""
    delivery = Delivery.from_body(callback_body(task), mode="live")
    assert DeliveryQueue.from_settings(settings, conn).accept(delivery)
    return delivery.delivery_id


def seen_identities(conn: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    keys = sorted(conn.scan_iter(match=seen_period_key(0).rsplit(":", 1)[0] + ":*"))
    return {key: conn.hgetall(key) for key in keys}


def after_last_update(tasks: list[dict[str, Any]]) -> str:
    """A time just after the tasks' last update, once the clock has passed it (so later tasks are later)."""
    moment = max(parse_instant(t["updated_at"]) for t in tasks) + timedelta(milliseconds=1)
    wait_for(lambda: datetime.now(UTC) > moment + timedelta(milliseconds=1), what="the clock to pass it")
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_rerun_of_one_handler_for_one_project_since_a_time_runs_it_once_per_task_and_nothing_else(
    sim: Sim, settings: Settings, redis_server: RedisProcess, redis_conn: redis.Redis, handlers: ModuleType
) -> None:
    old = make_tasks(sim.server, API_KEY, 2, project="kitchen")
    since = after_last_update(old)
    recent = make_tasks(sim.server, API_KEY, 3, project="kitchen")
    garden = make_tasks(sim.server, API_KEY, 2, project="garden")
    originals = {t["task_id"]: deliver(settings, redis_conn, t) for t in old + recent + garden}
    drain(redis_conn)
    before = runs(redis_conn)
    assert len(before) == 2 * 7  # store_boxes and label_items once per completed task
    identities = seen_identities(redis_conn)
    assert identities

    done, summary = rerun(env_for(redis_server, sim), STORE, "--project", "kitchen", "--updated-since", since)

    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(summary) == (3, 3, 0)
    assert f"{STORE}: queued for 3 tasks" in done.stdout
    drain(redis_conn)
    again = runs(redis_conn)[len(before) :]
    assert sorted(again) == sorted(
        ("store_boxes", t["task_id"], originals[t["task_id"]], "rerun", "completed") for t in recent
    )
    # The dedup identities are as they were: a rerun is not a delivery.
    assert seen_identities(redis_conn) == identities
    # The delivery's history keeps the original arrival and its attempt, and appends the rerun's.
    entry = Ledger(redis_conn, settings.ledger_ttl).delivery(originals[recent[0]["task_id"]])
    assert entry is not None and entry.source == "callback"
    assert [(a.source, [t.outcome for t in a.attempts]) for a in entry.arrivals] == [
        ("callback", ["d"]),
        ("rerun", ["d"]),
    ]
    assert entry.attempts[-1].handlers == [STORE]
    totals = stats.totals(redis_conn)
    assert totals["rerun_job|done"] == 3 and totals["job|done"] == 7 + 3 and totals["rerun_task|queued"] == 3
    exposed = {(m.name, s.labels.get("outcome")): s.value for m in counter_families(totals) for s in m.samples}
    assert exposed[("scb_rerun_jobs", "done")] == 3 and exposed[("scb_rerun_tasks", "queued")] == 3
    # A second run is a run of its own: the handler runs once more per task.
    done, summary = rerun(env_for(redis_server, sim), STORE, "--project", "kitchen", "--updated-since", since)
    assert counts(summary) == (3, 3, 0) and redis_conn.llen("rq:queue:callbacks") == 3


def test_an_audited_task_is_rerun_with_the_delivery_id_of_its_audit(
    sim: Sim, settings: Settings, redis_server: RedisProcess, redis_conn: redis.Redis, handlers: ModuleType
) -> None:
    [plain, audited] = make_tasks(sim.server, API_KEY, 2, project="kitchen")
    fixed = sim.call("POST", f"task/{audited['task_id']}/audit", result="fixed")
    original = deliver(settings, redis_conn, fixed)
    drain(redis_conn)
    redis_conn.delete(RUNS)

    done, summary = rerun(env_for(redis_server, sim), STORE, LABEL, "--event", "audit")

    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(summary) == (1, 1, 0)  # the completed task is not an audit: not selected
    drain(redis_conn)
    assert sorted(runs(redis_conn)) == [
        ("label_items", audited["task_id"], original, "rerun", "audit"),
        ("store_boxes", audited["task_id"], original, "rerun", "audit"),
    ]
    assert plain["task_id"] not in str(runs(redis_conn))


def test_a_dry_run_says_what_would_run_and_queues_nothing(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis
) -> None:
    make_tasks(sim.server, API_KEY, 3, project="kitchen")
    make_tasks(sim.server, API_KEY, 1, project="garden", complete=False)

    done, summary = rerun(env_for(redis_server, sim), STORE, ERRORS, "--dry-run")

    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(summary) == (4, 0, 1)
    assert "dry run: would queue 3 tasks; nothing was queued or stored" in done.stdout
    assert f"  {STORE}: 3 tasks" in done.stdout and ERRORS not in done.stdout.split("dry run")[1]
    assert redis_conn.llen("rq:queue:callbacks") == 0
    assert not redis_conn.exists(RERUNS_KEY)
    assert not list(redis_conn.scan_iter(match="rq:job:*"))


def test_a_new_handler_is_backfilled_over_every_task_of_the_account(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis, handlers: ModuleType
) -> None:
    tasks = make_tasks(sim.server, API_KEY, 3, project="kitchen") + make_tasks(sim.server, API_KEY, 2, project="garden")
    [pending, broken] = make_tasks(sim.server, API_KEY, 2, project="garden", complete=False)
    sim.call("POST", f"task/{broken['task_id']}/error")
    env = env_for(redis_server, sim)

    done, summary = rerun(env, LABEL)

    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(summary) == (7, 5, 2)  # the pending task has no event, the error is no result
    drain(redis_conn)
    assert sorted((h, t, s) for h, t, _, s, _ in runs(redis_conn)) == sorted(
        ("label_items", t["task_id"], "rerun") for t in tasks
    )
    redis_conn.delete(RUNS)
    done, summary = rerun(env, ERRORS)
    assert counts(summary) == (7, 1, 6)
    drain(redis_conn)
    assert [(h, t, e) for h, t, _, _, e in runs(redis_conn)] == [("report_errors", broken["task_id"], "error")]
    assert pending["task_id"] not in str(runs(redis_conn))


def test_task_reruns_one_task_and_an_unknown_one_is_named(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis, handlers: ModuleType
) -> None:
    [one, other] = make_tasks(sim.server, API_KEY, 2, project="kitchen")
    env = env_for(redis_server, sim)

    done, summary = rerun(env, STORE, "--task", one["task_id"])

    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(summary) == (1, 1, 0)
    drain(redis_conn)
    assert [(h, t) for h, t, *_ in runs(redis_conn)] == [("store_boxes", one["task_id"])]
    assert other["task_id"] not in str(runs(redis_conn))

    missing = "0" * 24
    done, summary = rerun(env, STORE, "--task", missing)
    assert done.returncode == 1 and counts(summary) == (0, 0, 0)
    assert f"task {missing}: Scale's API has no such task" in done.stderr


def test_an_unknown_handler_exits_non_zero_naming_it_and_listing_the_known_ones(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis
) -> None:
    done = run_cli(env_for(redis_server, sim), "rerun", STORE, "myapp.scale_handlers.store_box")
    assert done.returncode != 0
    assert "unknown handler myapp.scale_handlers.store_box" in done.stderr
    for name in (STORE, LABEL, ERRORS):
        assert name in done.stderr
    assert redis_conn.llen("rq:queue:callbacks") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name at least one HANDLER"),
        ((STORE, "--event", "done"), "unknown event done"),
        ((STORE, "--updated-since", "yesterday"), "not an ISO-8601 time"),
        ((STORE, "--task", "a", "--project", "p"), "--task names the tasks"),
        ((STORE, "--task", "a", "--completed-until", "2020-01-01"), "--task names the tasks"),
        ((STORE, "--completed-since", "2026-02-01", "--completed-until", "2026-01-01"), "window is empty"),
        ((STORE, "--updated-since", "2999-01-01"), "the updated window is empty"),
        ((STORE, "--resume", "abc", "--project", "p"), "--resume goes on with the run's own selection"),
        (("--resume", "0123456789ab"), "no rerun 0123456789ab"),
        (("--resume", "../../x"), "not a rerun id"),
    ],
)
def test_bad_input_is_refused_with_a_reason_before_any_request(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis, args: tuple[str, ...], message: str
) -> None:
    done = run_cli(env_for(redis_server, sim), "rerun", *args)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert redis_conn.llen("rq:queue:callbacks") == 0


@pytest.mark.slow
def test_a_run_killed_half_way_and_resumed_queues_each_task_once(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis, handlers: ModuleType, tmp_path: Path
) -> None:
    tasks = make_tasks(sim.server, API_KEY, 300, project="kitchen")
    sim.server.simulator.limiter = RateLimiter(1.0)  # a page a second: the kill lands between pages
    env = env_for(redis_server, sim)
    args = [sys.executable, "-m", "callback_server", "rerun", STORE, "--project", "kitchen"]
    with process(args, env, tmp_path / "rerun.log") as proc:
        run_id = wait_for(lambda: redis_conn.zrange(RERUNS_KEY, 0, 0), what="the run to start")[0].decode()
        wait_for(lambda: redis_conn.hlen(marks_key(run_id)) >= 100, timeout=30, what="the first page queued")
        kill_tree(proc)
    first = redis_conn.hlen(marks_key(run_id))
    assert 100 <= first < 300
    assert RunStore(redis_conn).get(run_id).state == "running"  # killed: it never said it finished

    done, summary = rerun(env, "--resume", run_id)

    assert done.returncode == 0, done.stdout + done.stderr
    assert summary[1] == run_id and counts(summary) == (300, 300, 0)
    assert f"{first} tasks were queued by this run before the resume, and not again" in done.stdout
    queued = redis_conn.lrange("rq:queue:callbacks", 0, -1)
    assert len(queued) == len(set(queued)) == 300
    drain(redis_conn)
    ran = [t for h, t, *_ in runs(redis_conn)]
    assert sorted(ran) == sorted(t["task_id"] for t in tasks)
    # Resuming a complete run is refused: nothing is queued a third time.
    again = run_cli(env, "rerun", "--resume", run_id)
    assert again.returncode != 0 and "is complete" in again.stderr


def test_ctrl_c_stops_a_run_that_resume_finishes(
    sim: Sim, settings: Settings, redis_conn: redis.Redis, handlers: ModuleType
) -> None:
    make_tasks(sim.server, API_KEY, 250, project="kitchen")
    rerunner = build_rerunner(settings, redis_conn, named_handlers([STORE], registry.snapshot()))
    run = new_run([STORE], Selection(projects=("kitchen",)), started_by="test", origin="here")

    def interrupt(progress: Run) -> None:
        if progress.listed >= 150 and progress.state != COMPLETE:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rerunner.execute(run, interrupt)
    stored = RunStore(redis_conn).get(run.run_id)
    assert stored.state == "interrupted" and stored.queued == 150
    resumed = rerunner.execute(RunStore(redis_conn).get(run.run_id))
    assert (resumed.state, resumed.listed, resumed.queued, resumed.already_queued) == (COMPLETE, 250, 250, 150)
    assert redis_conn.llen("rq:queue:callbacks") == 250
    rerunner.api.close()


@pytest.mark.slow
def test_two_thousand_tasks_are_listed_page_by_page_never_all_held(
    sim: Sim, settings: Settings, redis_conn: redis.Redis, handlers: ModuleType
) -> None:
    make_tasks(sim.server, API_KEY, 2000, project="kitchen")
    pages: list[int] = []
    session = requests.Session()
    session.hooks["response"].append(
        lambda r, *a, **k: pages.append(1) if r.url.split("?")[0].endswith("/tasks") else None
    )
    assert settings.scale_api_key is not None
    api = ScaleAPI(settings.scale_api_url, settings.scale_api_key, session=session)
    rerunner = build_rerunner(settings, redis_conn, named_handlers([STORE], registry.snapshot()))
    rerunner.api = api
    seen_at: list[tuple[int, int]] = []

    def progress(run: Run) -> None:
        seen_at.append((run.listed, len(pages)))

    run = rerunner.execute(new_run([STORE], Selection(), started_by="test", origin="here"), progress)

    assert (run.state, run.listed, run.queued, run.total) == (COMPLETE, 2000, 2000, 2000)
    assert len(pages) == 20
    # Whenever a task was handled, only the pages up to it had been asked for.
    for listed, fetched in seen_at[:-1]:
        assert fetched == math.ceil(listed / 100), (listed, fetched)
    assert redis_conn.llen("rq:queue:callbacks") == 2000
    api.close()


def test_a_rerun_job_that_fails_waits_listed_and_retry_now_runs_only_what_failed(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis, handlers: ModuleType
) -> None:
    [task] = make_tasks(sim.server, API_KEY, 1, project="kitchen")
    env = env_for(redis_server, sim, HANDLER_RETRY_INTERVALS="3600")
    redis_conn.set("test:fail:label_items", 1)
    done, summary = rerun(env, STORE, LABEL, "--task", task["task_id"])
    assert counts(summary) == (1, 1, 0)
    drain(redis_conn)
    assert sorted(h for h, *_ in runs(redis_conn)) == ["label_items", "store_boxes"]

    listed = run_cli(env, "waiting", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.strip().splitlines()
    job_id = line.split()[0]
    assert job_id.startswith("rerun-") and task["task_id"] in line
    assert f"{LABEL} (RuntimeError: label_items told to fail)" in line and STORE not in line.split("|")[1]
    assert "1 of 1 waiting to retry" in listed.stderr
    failed = run_cli(env, "failed", "list")
    assert job_id not in failed.stdout

    assert run_cli(env, "waiting", "retry-now").returncode == 2
    unknown = run_cli(env, "waiting", "retry-now", "rerun-nope")
    assert unknown.returncode == 1 and "rerun-nope  not waiting to retry" in unknown.stderr
    now = run_cli(env, "waiting", "retry-now", "--all")
    assert now.returncode == 0 and f"{job_id}  queued now" in now.stdout
    drain(redis_conn)
    assert [h for h, *_ in runs(redis_conn)] == ["store_boxes", "label_items", "label_items"]
    assert run_cli(env, "waiting", "list").stdout.strip() == ""
    assert stats.totals(redis_conn)["rerun_job|retry"] == 1


def test_named_handlers_checks_names_against_the_registry(handlers: ModuleType) -> None:
    found = named_handlers([STORE, ERRORS], registry.snapshot())
    assert {r.name for r in found} == {STORE, ERRORS}
    with pytest.raises(RerunError, match="unknown handler nope.x"):
        named_handlers(["nope.x"], registry.snapshot())
    with pytest.raises(RerunError, match="name at least one handler"):
        named_handlers([], registry.snapshot())
    with pytest.raises(RerunError, match="unknown handler workers.unhandled.record_unhandled"):
        named_handlers(["workers.unhandled.record_unhandled"], registry.snapshot())


def test_a_run_started_from_the_console_is_listed_and_queued_by_a_worker(
    sim: Sim,
    settings: Settings,
    redis_server: RedisProcess,
    redis_conn: redis.Redis,
    handlers: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [one, other] = make_tasks(sim.server, API_KEY, 2, project="kitchen")
    for name, value in env_for(redis_server, sim).items():
        if name.startswith(("REDIS_URL", "SCALE_", "CALLBACK_")):
            monkeypatch.setenv(name, value)  # the worker's environment, which the planner job reads
    run = request_run(redis_conn, settings, [STORE], [one["task_id"]], started_by="ops", origin="console")
    unknown = request_run(redis_conn, settings, ["myapp.gone"], [other["task_id"]], started_by="ops", origin="console")

    drain(redis_conn)  # the planner jobs, then the rerun job one of them queued

    done = RunStore(redis_conn).get(run.run_id)
    assert (done.state, done.listed, done.queued) == (COMPLETE, 1, 1)
    assert [(h, t, s) for h, t, _, s, _ in runs(redis_conn)] == [("store_boxes", one["task_id"], "rerun")]
    failed = RunStore(redis_conn).get(unknown.run_id)
    assert failed.state == "incomplete" and "unknown handler myapp.gone" in failed.errors[0]


def read_until(fd: int, wanted: str, timeout: float = 30.0) -> str:
    """What a terminal shows, read until ``wanted`` appears (or the child closes it)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{wanted!r} never appeared; the terminal showed {seen[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk.decode("utf-8", "replace")
    return seen


@pytest.mark.slow
def test_on_a_terminal_it_asks_before_more_than_a_thousand_tasks_and_draws_a_progress_bar(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis
) -> None:
    make_tasks(sim.server, API_KEY, 1001, project="kitchen")
    env = env_for(redis_server, sim)
    for answer, queued in (("n", 0), ("y", 1001)):
        main, child = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "callback_server", "rerun", STORE],
            env=env,
            cwd=ROOT,
            stdin=child,
            stdout=child,
            stderr=child,
            close_fds=True,
        )
        os.close(child)
        try:
            read_until(main, "again over 1,001 tasks? [y/N]")
            os.write(main, f"{answer}\n".encode())
            shown = read_until(
                main, "no named handler asks for its type and event)" if queued else "nothing was queued"
            )
            proc.wait(timeout=60)
        finally:
            os.close(main)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert redis_conn.llen("rq:queue:callbacks") == queued
        if queued:
            assert proc.returncode == 0
            assert "[##############################] 1001/1001" in shown  # the bar, full at the end
            assert "listed 1001, queued 1001, skipped 0" in shown
        else:
            assert proc.returncode == 1


@pytest.mark.slow
def test_sigterm_stops_a_run_as_interrupted_and_says_how_to_resume(
    sim: Sim, redis_server: RedisProcess, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    make_tasks(sim.server, API_KEY, 300, project="kitchen")
    sim.server.simulator.limiter = RateLimiter(1.0)
    log = tmp_path / "rerun.log"
    args = [sys.executable, "-m", "callback_server", "rerun", STORE, "--yes"]
    with process(args, env_for(redis_server, sim), log) as proc:
        run_id = wait_for(lambda: redis_conn.zrange(RERUNS_KEY, 0, 0), what="the run to start")[0].decode()
        wait_for(lambda: redis_conn.hlen(marks_key(run_id)) >= 100, timeout=30, what="the first page queued")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    run = RunStore(redis_conn).get(run_id)
    assert run.state == "interrupted" and run.finished_at
    output = log.read_text()
    assert f"resume with  python -m callback_server rerun --resume {run_id}" in output
    assert SUMMARY.search(output.strip().splitlines()[-1])


def test_the_progress_bar_is_one_redrawn_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    run = new_run([STORE], Selection(), started_by="t", origin="here")
    run.total, run.listed, run.queued = 200, 50, 40
    bar(run)
    run.listed = 200
    bar(run)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "[#######.......................] 50/200  listed 50, queued 40, skipped 0" in text
    assert "[##############################] 200/200" in text

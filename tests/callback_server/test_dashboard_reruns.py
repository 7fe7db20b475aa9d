"""The console's Reruns page and its action: a search's tasks, chosen handlers, CSRF, a confirmation, the audit log.

The web tier imports no handler code: it offers the names the workers registered, records the
run and hands it to a worker (a planner job). The browser test drives a real worker through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask.testing import FlaskClient
from rq.job import Job
from rq.serializers import JSONSerializer

from callback_server import ledger
from callback_server.config import Secret, Settings
from callback_server.rerun import INCOMPLETE, PLANNER_FUNCTION, REQUESTED, RunStore
from callback_server.web.dashboard import actions
from tests.support.console import act, auth, dashboard_app, page
from tests.support.jobs import accept

STORE = "myapp.scale_handlers.store_boxes"
LABEL = "myapp.scale_handlers.label_items"


@pytest.fixture
def console(settings: Settings, redis_conn: redis.Redis) -> Iterator[FlaskClient]:
    """The console of a receiver with an API key, beside workers that registered two handlers (and the fallback)."""
    ledger.register_handlers(redis_conn, [STORE, LABEL, "workers.unhandled.record_unhandled"])
    app = dashboard_app(replace(settings, scale_api_key=Secret("live_console_key")))
    yield app.test_client()
    app.extensions["callback_server"].tally.stop()


def queued(conn: redis.Redis) -> list[str]:
    return [raw.decode() for raw in conn.lrange("rq:queue:callbacks", 0, -1)]


def test_a_search_offers_its_tasks_and_the_handlers_workers_registered(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    html = page(console, "/dashboard/reruns")
    assert "No rerun yet." in html and 'id="rerun-form"' not in html
    delivery_id = accept(redis_conn, settings, "task-to-rerun")
    html = page(console, "/dashboard/reruns?q=task-to-rerun")
    assert delivery_id[:12] in html and 'name="ids" value="task-to-rerun"' in html
    assert f'value="{STORE}"' in html and f'value="{LABEL}"' in html
    assert "record_unhandled" not in html  # the fallback is no one's handler
    assert "Rerun for these 1 tasks" in html
    # By filter: every task of the type the ledger has.
    accept(redis_conn, settings, "another-task")
    html = page(console, "/dashboard/reruns?type=categorization")
    assert "Rerun for these 2 tasks" in html


def test_a_rerun_asks_first_then_is_recorded_handed_to_a_worker_and_audited(
    console: FlaskClient, redis_conn: redis.Redis
) -> None:
    answer = act(console, "rerun", confirm=False, ids=["task-a", "task-b"], handlers=[STORE])
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Confirm: Rerun handlers" in html
    assert f'<code class="carried">{STORE}</code>' in html and 'name="handlers" value="' + STORE + '"' in html
    assert not queued(redis_conn) and not RunStore(redis_conn).recent()

    answer = act(console, "rerun", ids=["task-a", "task-b"], handlers=[STORE, LABEL])
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "started for 2 tasks" in html
    [run] = RunStore(redis_conn).recent()
    assert (run.state, run.handlers, run.selection.task_ids) == (REQUESTED, [STORE, LABEL], ("task-a", "task-b"))
    assert run.started_by == "ops" and run.origin.startswith("console from ")
    assert queued(redis_conn) == [f"rerun-plan-{run.run_id}"]
    planner = Job.fetch(f"rerun-plan-{run.run_id}", connection=redis_conn, serializer=JSONSerializer)
    assert (planner.func_name, list(planner.args)) == (PLANNER_FUNCTION, [run.run_id])
    [entry] = actions.audit_log(redis_conn)
    assert entry["action"] == "rerun" and entry["ok"] and entry["outcomes"][0]["target"] == f"rerun {run.run_id}"
    html = page(console, "/dashboard/reruns")
    assert run.run_id in html and "requested" in html and "tasks task-a, task-b" in html
    html = page(console, f"/dashboard/reruns/{run.run_id}")
    assert "Nothing queued yet." in html and STORE in html and 'id="resume"' not in html
    # A console run that stopped half-way (its planner's worker restarted) can be resumed too.
    run.state = INCOMPLETE
    RunStore(redis_conn).save(run)
    html = page(console, f"/dashboard/reruns/{run.run_id}")
    assert f"python -m callback_server rerun --resume {run.run_id}" in html


@pytest.mark.parametrize(
    ("handlers", "ids", "says"),
    [
        ([], ["task-a"], "no handler was chosen"),
        (["myapp.nope"], ["task-a"], "unknown handler myapp.nope: no worker registered it"),
        (["workers.unhandled.record_unhandled<script>"], ["task-a"], "unknown handler"),
        ([STORE], ["../v1/tasks"], "not a task id"),
    ],
)
def test_a_bad_rerun_starts_nothing_and_says_why(
    console: FlaskClient, redis_conn: redis.Redis, handlers: list[str], ids: list[str], says: str
) -> None:
    answer = act(console, "rerun", ids=ids, handlers=handlers)
    assert says in answer.get_data(as_text=True)
    assert not queued(redis_conn) and not RunStore(redis_conn).recent()
    [entry] = actions.audit_log(redis_conn)
    assert not entry["ok"]


def test_a_rerun_without_a_csrf_token_or_an_api_key_is_refused(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    answer = act(console, "rerun", token="forged", ids=["task-a"], handlers=[STORE])
    assert answer.status_code == 403 and not queued(redis_conn)
    app = dashboard_app(settings)  # no SCALE_API_KEY
    client = app.test_client()
    answer = act(client, "rerun", ids=["task-a"], handlers=[STORE])
    assert "SCALE_API_KEY is not set" in answer.get_data(as_text=True) and not queued(redis_conn)
    app.extensions["callback_server"].tally.stop()


def test_an_unknown_run_is_a_404(console: FlaskClient) -> None:
    assert "rerun" in page(console, "/dashboard/reruns/0123456789ab", 404)
    assert console.get("/dashboard/reruns/x", headers=auth()).status_code == 404


def test_a_rerun_that_redis_refuses_says_so_and_is_no_500(console: FlaskClient, redis_conn: redis.Redis) -> None:
    page(console, "/dashboard/reruns")  # the deploy's CSRF secret exists from the first page on
    redis_conn.config_set("maxmemory", "1")  # full: under noeviction every write that adds memory is refused
    try:
        answer = act(console, "rerun", ids=["task-a"], handlers=[STORE])
    finally:
        redis_conn.config_set("maxmemory", "0")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "error: OutOfMemoryError" in html
    assert not queued(redis_conn) and not RunStore(redis_conn).recent()


def test_a_console_run_whose_worker_cannot_start_it_says_why_instead_of_staying_requested(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rq import Queue, SimpleWorker

    act(console, "rerun", ids=["task-a"], handlers=[STORE])
    [run] = RunStore(redis_conn).recent()
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("SCALE_CALLBACK_AUTH_KEY", "a-long-enough-callback-key-0123")
    monkeypatch.setenv("SCALE_API_KEY", "live_console_key")
    monkeypatch.setenv("CALLBACK_HANDLERS", "myapp.not_deployed_here")  # this worker's modules lack it
    queue = Queue(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    SimpleWorker([queue], connection=redis_conn, serializer=JSONSerializer).work(burst=True)
    run = RunStore(redis_conn).get(run.run_id)
    assert run.state == INCOMPLETE and "myapp.not_deployed_here" in run.errors[0]
    assert not queued(redis_conn)

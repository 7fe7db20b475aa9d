"""The ops console over HTTP: auth everywhere, nothing changes on GET, CSRF and confirmation on
every action, each action does what it says and is audited, hostile text is rendered inert."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from callback_server import ledger, stats
from callback_server.config import Secret, Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.reconcile_request import COOLDOWN_KEY, REQUEST_KEY, RunRequests
from callback_server.schemas import load_callback
from callback_server.web import create_app
from callback_server.web.dashboard import actions, guard
from tests.support.console import PASSWORD, act, auth, dashboard_app, fetch, page
from tests.support.fixtures import load_fixture, poison_body
from tests.support.http import post
from tests.support.jobs import accept
from tests.support.processes import wait_for

HOSTILE = "<script>alert(1)</script>\"'\nx"


@pytest.fixture
def console(settings: Settings) -> Iterator[FlaskClient]:
    app = dashboard_app(settings)
    yield app.test_client()
    app.extensions["callback_server"].tally.stop()


def outcome(conn: redis.Redis, delivery_id: str, failures: dict[str, str] | None = None, final: bool = True) -> None:
    """The outcome entry a worker writes after an attempt."""
    kind = (ledger.FAILED if final else ledger.RETRYING) if failures else ledger.DONE
    pipe = conn.pipeline()
    ledger.record_outcome(pipe, 3600, delivery_id, kind, 1, 12.5, ["tests.second"], failures or {})
    pipe.execute()


def failed_job(conn: redis.Redis, settings: Settings, task_id: str = "t-failed", category: str = "red") -> Job:
    """A delivery whose handler failed on every try: in the failed registry with its traceback."""
    delivery_id = accept(conn, settings, task_id, category)
    queue = Queue(settings.callback_queue, connection=conn, serializer=JSONSerializer)
    conn.lrem(queue.key, 0, delivery_id)
    job = Job.fetch(delivery_id, connection=conn, serializer=JSONSerializer)
    job.retries_left = 0
    job.save()
    FailedJobRegistry(queue=queue).add(job, ttl=600, exc_string="Traceback...\nRuntimeError: record told to fail")
    outcome(conn, delivery_id, {"tests.record": "Traceback\nRuntimeError: record told to fail"})
    return job


def accepted_ids(conn: redis.Redis) -> list[str]:
    return [e.delivery_id for e in ledger.Ledger(conn, 3600).recent(100)]


PAGES = [
    "/dashboard",
    "/dashboard/",
    "/dashboard/deliveries",
    "/dashboard/deliveries?q=t1&type=x&state=failed",
    "/dashboard/failed",
    "/dashboard/failed?q=categorization",
    "/dashboard/quarantine",
    "/dashboard/unhandled",
    "/dashboard/workers",
    "/dashboard/reconciliation",
    "/dashboard/audit",
    "/dashboard/static/console.js",
    "/dashboard/static/console.css",
]


def populate(client: FlaskClient, conn: redis.Redis, settings: Settings) -> dict[str, str]:
    """A callback handled, one failed, one waiting to retry, one quarantined, one unhandled note."""
    assert post(client, load_fixture("categorization")).get_json() == {"status": "queued"}
    job = failed_job(conn, settings)
    queue = Queue(settings.callback_queue, connection=conn, serializer=JSONSerializer)
    waiting = queue.enqueue("builtins.len", "x", job_id="a" * 32, description="categorization task t-waiting")
    conn.lrem(queue.key, 0, waiting.id)
    ScheduledJobRegistry(queue=queue).schedule(waiting, datetime_in(3600))
    assert post(client, b'{"task_id": 1}').get_json() == {"status": "quarantined"}
    conn.lpush(
        "scb:unhandled",
        json.dumps(
            {
                "delivery_id": "b" * 32,
                "task_id": "t-unhandled",
                "type": "lidar",
                "event": "recalled",
                "review_status": None,
                "recorded_at": "now",
            }
        ),
    )
    return {"failed": job.id, "waiting": waiting.id, "quarantined": conn.zrange("scb:quarantine", 0, 0)[0].decode()}


def datetime_in(seconds: float) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


def everything(conn: redis.Redis) -> dict[bytes, Any]:
    """Every key's content (not DUMP: a read may step a hash table's rehash and reorder it)."""
    readers = {
        b"string": conn.get,
        b"hash": conn.hgetall,
        b"list": lambda k: conn.lrange(k, 0, -1),
        b"set": conn.smembers,
        b"zset": lambda k: conn.zrange(k, 0, -1, withscores=True),
        b"stream": lambda k: conn.xrange(k),
    }
    return {key: readers[conn.type(key)](key) for key in sorted(conn.keys("*"))}


def settle(client: FlaskClient) -> None:
    """Stop the app's background counter flush (ingest's, not the console's) and deliver what it still owes."""
    state = client.application.extensions["callback_server"]
    state.tally.stop()
    flusher = state.tally._flusher  # this app's thread only: other tests' apps may still flush theirs
    if flusher is not None:
        flusher.join(timeout=10)
        assert not flusher.is_alive()
    stats.flush(state.connection, state.tally)


# --- existence and auth ---------------------------------------------------------------------------


def test_no_password_no_dashboard(client: FlaskClient) -> None:
    assert client.get("/dashboard/").status_code == 404
    assert client.post("/dashboard/action/failed-replay").status_code == 404


def test_every_page_action_and_file_wants_credentials(console: FlaskClient) -> None:
    for path in [*PAGES, "/dashboard/deliveries/" + "0" * 32, "/dashboard/quarantine/x"]:
        for headers in ({}, auth("ops", "wrong"), auth("admin", PASSWORD), {"Authorization": "Bearer x"}):
            answer = fetch(console, path, headers)
            assert answer.status_code in (401, 429), (path, headers)
            assert "Scale callbacks" not in answer.get_data(as_text=True)
        time_out = guard.Throttle(console.application.extensions["callback_server"].connection)
        time_out.succeeded(guard.client_key("127.0.0.1", None, behind_router=False))
    answer = console.post("/dashboard/action/reconcile-run", data={"confirm": "yes"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_failed_logins_make_the_client_wait_without_sleeping(console: FlaskClient, redis_conn: redis.Redis) -> None:
    for _ in range(guard.FREE_FAILURES):
        assert console.get("/dashboard/", headers=auth(password="guess")).status_code == 401
    started = time.monotonic()
    assert console.get("/dashboard/", headers=auth(password="guess")).status_code == 401
    assert time.monotonic() - started < 0.5  # the worker was not put to sleep
    # Now even the right password is not checked until the delay is over.
    refused = console.get("/dashboard/", headers=auth())
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    assert refused.headers["Cache-Control"] == "no-store"
    wait_for(lambda: console.get("/dashboard/", headers=auth()).status_code == 200, timeout=5, what="the delay to pass")
    # Another client is not held up by this one.
    other = console.get("/dashboard/", headers=auth(), environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert other.status_code == 200
    # Success forgets the failures (everyone's count stays, for its window).
    assert redis_conn.keys(f"{guard.FAILURE_PREFIX}:*") == [guard.GLOBAL_FAILURES.encode()]


def test_x_forwarded_for_is_the_clients_word_except_behind_herokus_router(settings: Settings) -> None:
    """Off Heroku the header cannot rotate a guesser's identity, nor name the operator's address."""
    assert guard.client_key("10.0.0.1", "1.1.1.1", behind_router=False) == guard.client_key(
        "10.0.0.1", "2.2.2.2", behind_router=False
    )
    behind = guard.client_key("10.1.2.3", "6.6.6.6, 203.0.113.5", behind_router=True)
    assert behind == guard.client_key("10.9.9.9", "203.0.113.5", behind_router=True)  # the router's hop
    assert behind != guard.client_key("10.1.2.3", "203.0.113.5, 6.6.6.6", behind_router=True)
    assert Settings.from_env(
        {"REDIS_URL": "redis://h", "SCALE_CALLBACK_AUTH_KEY": "k" * 16, "DYNO": "web.1"}
    ).behind_router
    assert not settings.behind_router


def test_guesses_spread_over_many_addresses_slow_new_clients_but_not_a_known_one(
    console: FlaskClient, redis_conn: redis.Redis
) -> None:
    assert console.get("/dashboard/", headers=auth(), environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 200
    for n in range(guard.GLOBAL_FREE + 1):  # one guess from each of many addresses: none trips its own delay
        guess = console.get("/dashboard/", headers=auth(password="guess"), environ_base={"REMOTE_ADDR": f"10.0.{n}.1"})
        assert guess.status_code == 401
    newcomer = console.get("/dashboard/", headers=auth(password="guess"), environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert newcomer.status_code == 429 and int(newcomer.headers["Retry-After"]) >= 1
    operator = console.get("/dashboard/", headers=auth(), environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert operator.status_code == 200  # known from its earlier login: not locked out


def test_the_delay_doubles_and_is_capped() -> None:
    assert [guard.FREE_FAILURES, guard.MAX_DELAY] == [3, 300]
    assert guard.csrf_valid(guard.csrf_token(b"pw"), b"pw")
    assert not guard.csrf_valid(guard.csrf_token(b"pw"), b"other")
    assert not guard.csrf_valid(guard.csrf_token(b"pw", now=time.time() - guard.CSRF_LIFETIME - 5), b"pw")
    for bad in (None, "", "x", "1.2.3", "abc.def", guard.csrf_token(b"pw") + "0"):
        assert not guard.csrf_valid(bad, b"pw"), bad


def test_throttle_delays(redis_conn: redis.Redis) -> None:
    throttle = guard.Throttle(redis_conn)
    delays = [throttle.failed("c", now=1000.0) for _ in range(14)]
    assert delays[:3] == [0, 0, 0]
    assert delays[3:9] == [1, 2, 4, 8, 16, 32]
    assert delays[-1] == guard.MAX_DELAY
    assert throttle.wait("c", now=1000.0) == guard.MAX_DELAY
    assert throttle.wait("c", now=1000.0 + guard.MAX_DELAY) == 0
    assert throttle.wait("someone-else") == 0


def test_every_answer_forbids_framing_inline_script_and_caching(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    populate(console, redis_conn, settings)
    for path in PAGES:
        for answer in (fetch(console, path, auth()), fetch(console, path)):
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert answer.headers["Cache-Control"] == "no-store"
            csp = answer.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        html = fetch(console, path, auth()).get_data(as_text=True)
        if path.endswith((".js", ".css")):
            continue
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path  # every script is a file
        assert "<style" not in html and " style=" not in html and " on" + "click" not in html
        assert PASSWORD not in html


# --- reading ----------------------------------------------------------------------------------------


def test_no_page_changes_anything(console: FlaskClient, settings: Settings, redis_conn: redis.Redis) -> None:
    ids = populate(console, redis_conn, settings)
    Worker(["callbacks"], connection=redis_conn, name="w1").register_birth()
    redis_conn.sadd("rq:workers", "rq:worker:gone")  # a worker whose key expired
    settle(console)
    page(console, "/dashboard/reconciliation")  # the deploy's CSRF secret exists from the first page on
    before = everything(redis_conn)
    for path in [
        *PAGES,
        f"/dashboard/deliveries/{ids['failed']}",
        f"/dashboard/quarantine/{ids['quarantined']}",
        f"/dashboard/deliveries?q={ids['failed']}",
        "/dashboard/deliveries?q=t-failed",
    ]:
        page(console, path)
    assert everything(redis_conn) == before


def test_overview_counts_and_charts_with_data(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    populate(console, redis_conn, settings)
    settle(console)
    html = page(console, "/dashboard/")
    counts = dict(re.findall(r'data-count="([^"]+)"[^>]*><span class="num">(\d+)</span>', html.replace("\n", " ")))
    assert counts == {
        "queued": "1",
        "running": "0",
        "waiting to retry": "1",
        "failed": "1",
        "quarantined": "1",
        "unhandled": "1",
    }
    assert "waiting " in html and "noeviction" in html and "none yet" in html
    charts = re.findall(r'<svg class="chart"[^>]*data-kind="(\w+)" data-total="([\d.]+)"', html)
    assert len(charts) == 6
    # The callbacks chart of the last hour counts the two deliveries queued and the quarantined one.
    assert charts[0] == ("bars", "3")
    assert html.count('class="bar"') >= 2


def test_deliveries_search_filters_and_page(console: FlaskClient, settings: Settings, redis_conn: redis.Redis) -> None:
    ids = populate(console, redis_conn, settings)
    by_task = page(console, "/dashboard/deliveries?q=t-failed")
    assert ids["failed"] in by_task and "1 deliveries of" in by_task
    assert ids["failed"] in page(console, f"/dashboard/deliveries?q={ids['failed']}")
    assert "never seen" in page(console, "/dashboard/deliveries?q=no-such-task")
    listed = page(console, "/dashboard/deliveries?state=failed")
    assert ids["failed"] in listed and load_fixture("categorization")["task_id"] not in listed
    assert "queued" in page(console, "/dashboard/deliveries?state=queued&source=callback")
    assert ids["failed"] not in page(console, "/dashboard/deliveries?source=replay")

    one = page(console, f"/dashboard/deliveries/{ids['failed']}")
    assert "t-failed" in one and "categorization" in one
    assert "RuntimeError: record told to fail" in one  # the handler's traceback
    assert "attempt 1 failed" in one and "failed for good" in one
    assert "&#34;instruction&#34;" in one or "&quot;instruction&quot;" in one  # the body from the job
    assert 'data-action="failed-replay"' in one
    page(console, "/dashboard/deliveries/" + "f" * 32, status=404)
    page(console, "/dashboard/deliveries/not-an-id", status=404)

    # A finished job is deleted: the body is said to be gone; the task's other deliveries are listed.
    finished = accept(redis_conn, settings, "t-failed", category="blue")
    redis_conn.delete(Job.key_for(finished))
    outcome(redis_conn, finished)
    done = page(console, f"/dashboard/deliveries/{finished}")
    assert "Body no longer kept" in done and ids["failed"] in done and "attempt 1 done" in done


def test_workers_page_shows_live_and_dead_by_one_rule(console: FlaskClient, redis_conn: redis.Redis) -> None:
    alive = Worker(["callbacks"], connection=redis_conn, name="alive-1")
    alive.register_birth()
    redis_conn.hset(alive.key, "last_heartbeat", "2020-01-01T00:00:00.000000Z")  # the key decides, not the stamp
    dead = Worker(["callbacks"], connection=redis_conn, name="dead-1")
    dead.register_birth()
    redis_conn.delete(dead.key)  # as when its TTL ran out: the name stays registered
    redis_conn.sadd("rq:workers", "rq:worker:gone-1")
    html = page(console, "/dashboard/workers")
    rows = {name: row for name, row in re.findall(r"<tr[^>]*><td>([\w-]+)</td>(.*?)</tr>", html, re.S)}
    assert "dead (key expired)" not in rows["alive-1"] and "dead (key expired)" in rows["dead-1"]
    assert "dead (key expired)" in rows["gone-1"]
    overview = page(console, "/dashboard/")
    # The overview counts the queue's workers as /metrics and doctor do: one alive, one dead.
    assert "1 alive" in overview and "1 dead" in overview


# --- actions -----------------------------------------------------------------------------------------


def test_actions_want_a_valid_token_and_a_confirmation(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    ids = populate(console, redis_conn, settings)
    settle(console)
    page(console, "/dashboard/reconciliation")  # the deploy's CSRF secret exists from the first page on
    before = everything(redis_conn)
    other_app_token = guard.csrf_token(b"another-password")
    password_only = guard.csrf_token(hashlib.sha256(b"scb-dashboard-csrf\0" + PASSWORD.encode()).digest())
    for token, headers in (
        ("", {}),
        ("garbage", {}),
        (other_app_token, {}),
        (password_only, {}),  # a token made from the password alone, as before: it no longer passes
        (None, {"Origin": "https://evil.example"}),
        (None, {"Sec-Fetch-Site": "cross-site"}),
        ("", {"Origin": "null"}),
    ):
        refused = act(console, "failed-replay", token=token, headers=headers, ids=ids["failed"])
        assert refused.status_code == 403, (token, headers)
        assert "nothing was done" in refused.get_data(as_text=True)
    asked = act(console, "failed-replay", confirm=False, ids=ids["failed"])
    assert asked.status_code == 200
    assert 'name="confirm" value="yes"' in asked.get_data(as_text=True)
    assert everything(redis_conn) == before
    assert console.get("/dashboard/action/failed-replay", headers=auth()).status_code == 405
    assert act(console, "no-such-action").status_code == 404
    assert act(console, "failed-replay", scope="selected").status_code == 400  # nothing ticked


def test_replay_failed_gives_all_retries_back_and_is_audited(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    ids = populate(console, redis_conn, settings)
    done = act(console, "failed-replay", ids=ids["failed"])
    assert done.status_code == 200 and "requeued (6 tries)" in done.get_data(as_text=True)
    queue = Queue(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)
    assert ids["failed"] in queue.job_ids
    assert Job.fetch(ids["failed"], connection=redis_conn, serializer=JSONSerializer).retries_left == 5
    again = act(console, "failed-replay", ids=ids["failed"])
    assert "not in the failed registry" in again.get_data(as_text=True)
    log = actions.audit_log(redis_conn)
    assert [e["action"] for e in log] == ["failed-replay", "failed-replay"]
    assert log[1]["outcomes"] == [{"target": ids["failed"], "result": "requeued (6 tries)", "ok": True}]
    assert log[1]["ok"] and not log[0]["ok"]
    assert "requeued" in page(console, "/dashboard/audit")


def test_replay_and_delete_all_on_a_filter(console: FlaskClient, settings: Settings, redis_conn: redis.Redis) -> None:
    ids = populate(console, redis_conn, settings)
    other = failed_job(redis_conn, settings, task_id="t-other")
    confirm = act(console, "failed-replay", confirm=False, scope="all", q="t-other").get_data(as_text=True)
    assert other.id in confirm and ids["failed"] not in confirm
    act(console, "failed-replay", scope="all", q="t-other")
    registry = FailedJobRegistry(queue=Queue(settings.callback_queue, connection=redis_conn))
    assert registry.get_job_ids(cleanup=False) == [ids["failed"]]
    act(console, "failed-delete", ids=ids["failed"])
    assert registry.get_job_ids(cleanup=False) == []
    assert not redis_conn.exists(Job.key_for(ids["failed"]))


def test_retry_now_quarantine_unhandled_and_reconcile_actions(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    ids = populate(console, redis_conn, settings)
    queue = Queue(settings.callback_queue, connection=redis_conn, serializer=JSONSerializer)

    assert "queued now" in act(console, "retry-now", ids=ids["waiting"]).get_data(as_text=True)
    assert ids["waiting"] in queue.job_ids
    assert ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False) == 0

    still = act(console, "quarantine-replay", ids=ids["quarantined"]).get_data(as_text=True)
    assert "still invalid" in still and redis_conn.zcard("scb:quarantine") == 1
    body = load_fixture("categorization")
    body["task_id"] = body["task"]["task_id"] = "t-from-quarantine"
    assert post(console, json.dumps(body).replace('"completed"', '"kompleted"', 1)).get_json() == {
        "status": "quarantined"
    }
    fixable = [i.decode() for i in redis_conn.zrange("scb:quarantine", 0, -1) if i.decode() != ids["quarantined"]][0]
    redis_conn.hset(f"scb:quarantine:{fixable}", "body", json.dumps(body))  # as after a schema fix
    replayed = act(console, "quarantine-replay", ids=fixable).get_data(as_text=True)
    assert "queued: task t-from-quarantine" in replayed
    assert [e.source for e in ledger.Ledger(redis_conn, 3600).deliveries_of_task("t-from-quarantine")] == ["replay"]
    assert "deleted" in act(console, "quarantine-delete", ids=ids["quarantined"]).get_data(as_text=True)
    assert redis_conn.zcard("scb:quarantine") == 0

    assert "dismissed" in act(console, "unhandled-delete", scope="all", type="lidar").get_data(as_text=True)
    assert redis_conn.llen("scb:unhandled") == 0

    assert "requested" in act(console, "reconcile-run").get_data(as_text=True)
    assert redis_conn.exists(REQUEST_KEY)
    assert "already requested" in act(console, "reconcile-run").get_data(as_text=True)
    assert "Waiting for the clock process" in page(console, "/dashboard/reconciliation")

    assert [e["action"] for e in reversed(actions.audit_log(redis_conn))] == [
        "retry-now",
        "quarantine-replay",
        "quarantine-replay",
        "quarantine-delete",
        "unhandled-delete",
        "reconcile-run",
        "reconcile-run",
    ]


def test_run_now_has_a_cooldown_once_a_run_was_taken(console: FlaskClient, redis_conn: redis.Redis) -> None:
    assert "requested" in act(console, "reconcile-run").get_data(as_text=True)
    requests = RunRequests(redis_conn)
    assert requests.take()  # the clock started it
    again = act(console, "reconcile-run").get_data(as_text=True)
    assert "less than 5 min ago: ask again in" in again and not redis_conn.exists(REQUEST_KEY)
    assert 290 <= requests.cooldown_left() <= 300
    redis_conn.delete(COOLDOWN_KEY)  # as five minutes later
    assert "requested: the clock process" in act(console, "reconcile-run").get_data(as_text=True)


def test_run_requests_are_taken_once_and_report_back(redis_conn: redis.Redis) -> None:
    requests = RunRequests(redis_conn)
    assert requests.wait(0.05, poll=0.01) is False
    assert requests.request(by="dashboard") and not requests.request(by="dashboard")
    assert requests.status()["state"] == "requested"
    assert requests.wait(5, poll=0.01) is True
    assert requests.status()["state"] == "running" and not requests.take()
    requests.finished("run-1", "complete: seen 3")
    assert requests.status() | {"finished_at": ""} == {
        "state": "done",
        "requested_at": requests.status()["requested_at"],
        "started_at": requests.status()["started_at"],
        "finished_at": "",
        "run_id": "run-1",
        "result": "complete: seen 3",
    }


def test_one_bad_target_never_stops_the_others_and_the_audit_entry_keeps_each_outcome(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    """A body that breaks the identity's encoder (1,000 nested arrays) is kept with why; the others go on."""
    assert post(console, poison_body()).get_json() == {"status": "quarantined"}
    body = load_fixture("categorization")
    body["task_id"] = body["task"]["task_id"] = "t-after-poison"
    assert post(console, json.dumps(body).replace('"completed"', '"kompleted"', 1)).get_json() == {
        "status": "quarantined"
    }
    ids = [i.decode() for i in redis_conn.zrange("scb:quarantine", 0, -1)]
    fixable = next(i for i in ids if b"t-after-poison" in redis_conn.hget(f"scb:quarantine:{i}", "body"))
    [poisoned] = [i for i in ids if i != fixable]
    redis_conn.hset(f"scb:quarantine:{fixable}", "body", json.dumps(body))  # as after a schema fix
    done = act(console, "quarantine-replay", scope="all", headers={"X-Forwarded-For": "203.0.113.7, 10.1.2.3"})
    assert done.status_code == 200
    text = done.get_data(as_text=True)
    assert (
        "kept: body passed validation but could not be queued: RecursionError" in text
        and "queued: task t-after-poison" in text
    )
    assert (
        redis_conn.hget(f"scb:quarantine:{poisoned}", "reason")
        .decode()
        .startswith("body passed validation but could not be queued: RecursionError")
    )
    assert not redis_conn.exists(f"scb:quarantine:{fixable}")
    [entry] = actions.audit_log(redis_conn)
    assert entry["count"] == 2 and entry["failed"] == 1 and not entry["ok"]
    assert {o["target"]: o["ok"] for o in entry["outcomes"]} == {poisoned: False, fixable: True}
    assert entry["user"] == "ops" and entry["forwarded_for"] == "203.0.113.7, 10.1.2.3"
    assert "203.0.113.7" in page(console, "/dashboard/audit")


def test_a_malformed_job_id_is_a_clear_400_and_changes_nothing(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    ids = populate(console, redis_conn, settings)
    page(console, "/dashboard/reconciliation")  # the deploy's CSRF secret exists from the first page on
    before = everything(redis_conn)
    refused = act(console, "failed-replay", ids=[ids["failed"], "bad id!"])
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "Nothing was done: not a job id" in text and "bad id!" in text
    assert everything(redis_conn) == before and actions.audit_log(redis_conn) == []
    assert act(console, "retry-now", ids="../../x").status_code == 400


def test_a_target_text_cannot_forge_another_outcome_in_the_audit_log(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    forged = "x; t-real: requeued; audit by alice"
    act(console, "fetch", ids=forged)
    [entry] = actions.audit_log(redis_conn)
    assert len(entry["outcomes"]) == 1 and entry["outcomes"][0]["target"] == forged and not entry["ok"]


@contextmanager
def slow_api(seconds: float) -> Iterator[str]:
    """A Scale API that takes ``seconds`` to say 404 to anything; yields its base URL."""

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(seconds)
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status_code": 404, "error": "no such task"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)  # a quick shutdown
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_long_fetch_stops_at_its_deadline_and_names_the_ids_it_did_not_reach(
    settings: Settings, redis_conn: redis.Redis
) -> None:
    with slow_api(0.3) as url:
        app = create_app(replace(settings, scale_api_url=url, scale_api_key=Secret("live_key_for_the_console")))
        try:
            ids = [f"{n:024x}" for n in range(20)]
            outcomes = actions.run(app.extensions["callback_server"], actions.ACTIONS["fetch"], ids, deadline=1.0)
        finally:
            app.extensions["callback_server"].tally.stop()
    assert [o.target for o in outcomes] == ids
    reached = [o for o in outcomes if not o.result.startswith("not reached")]
    assert 2 <= len(reached) <= 6, [o.result for o in outcomes]
    assert all("not found" in o.result for o in reached)
    assert all(not o.ok for o in outcomes)


def accept_raw(conn: redis.Redis, settings: Settings, raw: str) -> str:
    """A raw callback body through the real parse and accept path; its delivery id."""
    delivery = Delivery.from_body(load_callback(raw.encode()), mode="live", raw=raw)
    assert DeliveryQueue.from_settings(settings, conn).accept(delivery)
    return delivery.delivery_id


def test_a_deeply_nested_body_renders_a_bounded_page_and_links_to_the_whole(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    nests = ",".join(["[" * 400 + "]" * 400] * 20)
    raw = json.dumps(load_fixture("categorization")).replace(
        '"category": "red"', f'"category": "red", "nests": [{nests}]'
    )
    delivery_id = accept_raw(redis_conn, settings, raw)
    stored = redis_conn.hget(f"rq:job:{delivery_id}", "data")
    page_text = page(console, f"/dashboard/deliveries/{delivery_id}")
    unbounded = len(json.dumps(json.loads(raw), indent=2))
    assert unbounded > 100 * len(stored)  # what the page used to render: over 3 MB
    assert len(page_text) < 4 * len(stored) + 64 * 1024
    assert f'href="/dashboard/deliveries/{delivery_id}/raw"' in page_text and "Shown in part" in page_text
    whole = console.get(f"/dashboard/deliveries/{delivery_id}/raw", headers=auth())
    assert whole.status_code == 200 and whole.mimetype == "application/json" and whole.data == stored
    assert console.get(f"/dashboard/deliveries/{delivery_id}/raw").status_code == 401
    assert console.get("/dashboard/deliveries/" + "0" * 32 + "/raw", headers=auth()).status_code == 404


def test_a_lone_surrogate_in_a_stored_body_is_shown_escaped_not_a_500(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    raw = json.dumps(load_fixture("categorization")).replace('"category": "red"', '"category": "\\ud800"')
    delivery_id = accept_raw(redis_conn, settings, raw)
    shown = page(console, f"/dashboard/deliveries/{delivery_id}")
    assert "\\ud800" in shown and "Shown in part" not in shown


def test_the_failed_and_quarantine_pages_read_no_body(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    populate(console, redis_conn, settings)
    for path, shows in (("/dashboard/failed", "t-failed"), ("/dashboard/quarantine", "quarantine/")):
        page(console, path)  # warm: the CSRF secret
        redis_conn.config_resetstat()
        html = page(console, path)
        assert shows in html
        calls = {name.removeprefix("cmdstat_") for name in redis_conn.info("commandstats")}
        assert "hgetall" not in calls, (path, calls)  # a job's or a body's whole hash: never
    stats_line = page(console, "/dashboard/quarantine")
    assert re.search(r"<td>\d+ B</td>", stats_line)  # the size, from HSTRLEN


def test_the_audit_log_is_capped(console: FlaskClient, redis_conn: redis.Redis) -> None:
    for index in range(actions.AUDIT_KEPT + 5):
        redis_conn.lpush(
            actions.AUDIT_KEY,
            json.dumps({"at": str(index), "action": "x", "target": "t", "result": "r", "ok": True, "client": ""}),
        )
    act(console, "reconcile-run")
    assert redis_conn.llen(actions.AUDIT_KEY) == actions.AUDIT_KEPT
    assert actions.audit_log(redis_conn, 1)[0]["action"] == "reconcile-run"


# --- hostile content ---------------------------------------------------------------------------------


def test_hostile_text_is_rendered_inert_everywhere(
    console: FlaskClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    body = load_fixture("categorization")
    body["task_id"] = body["task"]["task_id"] = HOSTILE
    body["task"]["metadata"] = {"note": HOSTILE}
    assert post(console, body).get_json() == {"status": "queued"}
    assert (
        post(console, b'{"task_id": "<script>alert(1)</script>", "x": "\'\\"\\n"}').get_json()["status"]
        == "quarantined"
    )
    job = failed_job(redis_conn, settings, task_id=HOSTILE, category="blue")
    redis_conn.lpush(
        "scb:unhandled",
        json.dumps(
            {"delivery_id": "b" * 32, "task_id": HOSTILE, "type": HOSTILE, "event": HOSTILE, "recorded_at": HOSTILE}
        ),
    )
    quarantined = redis_conn.zrange("scb:quarantine", 0, 0)[0].decode()
    act(console, "quarantine-delete", confirm=False, ids=quarantined)
    act(console, "unhandled-delete", scope="all")
    paths = [
        "/dashboard/",
        "/dashboard/deliveries",
        f"/dashboard/deliveries?q={HOSTILE}",
        f"/dashboard/deliveries/{job.id}",
        "/dashboard/failed",
        f"/dashboard/failed?q={HOSTILE}",
        "/dashboard/quarantine",
        f"/dashboard/quarantine/{quarantined}",
        "/dashboard/unhandled",
        "/dashboard/audit",
    ]
    for path in paths:
        html = page(console, path)
        assert "<script>alert" not in html, path
        assert "\"'\nx" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page(console, f"/dashboard/deliveries/{job.id}")
    assert "&lt;script&gt;" in page(console, f"/dashboard/quarantine/{quarantined}")
    # A hostile confirmation page (the ids come from the form) is escaped too.
    confirm = act(console, "failed-replay", confirm=False, ids=HOSTILE).get_data(as_text=True)
    assert "<script>alert" not in confirm and "&lt;script&gt;" in confirm
    # The link back never leaves the console.
    for target in ("https://evil.example/", "//evil.example", "/dashboard//evil.example", "/\\evil.example"):
        result = act(console, "reconcile-run", next=target).get_data(as_text=True)
        assert "evil.example" not in result


def test_a_large_body_is_folded(console: FlaskClient, settings: Settings, redis_conn: redis.Redis) -> None:
    job = failed_job(redis_conn, settings)
    arg = copy.deepcopy(job.args[0])
    arg["body"]["task"]["metadata"] = {"blob": "x" * 10_000}
    job.args = [arg]
    job.save()
    html = page(console, f"/dashboard/deliveries/{job.id}")
    assert re.search(r'<details id="body"\s*>', html) and "folded: large" in html


def test_fetch_is_offered_for_an_unknown_task_only_with_an_api_key(console: FlaskClient, settings: Settings) -> None:
    html = page(console, "/dashboard/deliveries?q=never-seen-task")
    assert "never seen" in html and 'data-action="fetch"' not in html and "SCALE_API_KEY" in html
    answer = act(console, "fetch", ids="never-seen-task").get_data(as_text=True)
    assert "SCALE_API_KEY is not set" in answer
    keyed = dashboard_app(replace(settings, scale_api_key=Secret("live_key_for_the_console_0123"))).test_client()
    assert 'data-action="fetch"' in page(keyed, "/dashboard/deliveries?q=never-seen-task")


def test_the_overview_warns_when_redis_memory_is_high(console: FlaskClient, redis_conn: redis.Redis) -> None:
    assert "MEMORY HIGH" not in page(console, "/dashboard/")
    used = int(redis_conn.info("memory")["used_memory"])
    redis_conn.config_set("maxmemory", str(int(used / 0.9)))  # past the 80 % headroom warning, under the limit
    try:
        overview = page(console, "/dashboard/")
    finally:
        redis_conn.config_set("maxmemory", "0")
    assert "MEMORY HIGH: at the limit every callback is answered 503" in overview


def test_the_overview_shows_the_newest_reconciliation_run(console: FlaskClient, redis_conn: redis.Redis) -> None:
    from callback_server.reconcile import RunLog, RunSummary

    log = RunLog(redis_conn)
    log.add(RunSummary("run-older", "2026-12-01T00:00:00.000Z", "", "", seen=1, complete=True))
    log.add(RunSummary("run-newer", "2026-12-02T00:00:00.000Z", "", "", seen=7, queued=3, errors=["x"]))
    html = page(console, "/dashboard/")
    assert "2026-12-02T00:00:00.000Z</a>:" in html and "2026-12-01T00:00:00.000Z" not in html
    assert "INCOMPLETE, seen 7, queued 3, errors 1" in " ".join(html.split())

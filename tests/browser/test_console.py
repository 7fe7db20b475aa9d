"""The ops console in a real Chromium (Debian's, driven by Playwright) against the real stack:
gunicorn serving the app, an RQ worker running the recording handlers, the Scale simulator
calling back, and the clock process for "run now".

An operator's night, in order: log in, find a delivery by task id, read a failing plug-in's
traceback, replay it from the failed list and watch it finish, replay a quarantined body, fetch
a task whose callback was lost, ask the clock for a reconciliation, check the charts have data,
and find every one of those actions in the audit log. With SCREENSHOT_DIR set, the pages shown
in the README are saved there (``SCREENSHOT_DIR=docs make test`` or pytest tests/browser).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright
from rq import Queue
from rq.registry import FailedJobRegistry
from scaleapi import ScaleClient

from callback_server.embedded import RedisProcess, free_port
from scale_sim.config import Secret, SimSettings
from scale_sim.server import SimServer
from tests.support.browser import CHROMIUM, TIMEOUT_MS, confirm, shoot
from tests.support.fixtures import load_fixture
from tests.support.keys import LIVE_KEY
from tests.support.processes import gunicorn, process, stack_env, wait_for, worker_args
from tests.support.tasks import CLIENT_TYPES, json_body

pytestmark = pytest.mark.slow

PASSWORD = "console-browser-test-password"
API_KEY = "live_console_browser_account"


@dataclass
class Stack:
    """The running receiver (with its console), worker, clock and simulator."""

    base: str
    sim: SimServer
    conn: redis.Redis

    def create(self, faults: list[str] | None = None) -> str:
        params = json_body(f"{self.base}/callback", "categorization")
        if faults:
            params["metadata"] = {"sim_faults": faults}
        client = ScaleClient(API_KEY, api_instance_url=self.sim.api_url)
        return str(client.create_task(CLIENT_TYPES["categorization"], **params).id)

    def failed_ids(self) -> list[str]:
        return FailedJobRegistry(queue=Queue("callbacks", connection=self.conn)).get_job_ids(cleanup=False)


@pytest.fixture(scope="module")
def stack(redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not redis_server.running:
        redis_server.start()
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushall()
    logs = tmp_path_factory.mktemp("console")
    port = free_port()
    sim_settings = SimSettings(
        callback_auth_key=Secret(LIVE_KEY),
        completion_delay=0.0,
        time_scale=0.0001,
        default_callback_url=f"http://127.0.0.1:{port}/callback",
        data_path=str(logs / "sim.sqlite3"),
        callback_timeout=2.0,
    )
    with SimServer(sim_settings) as sim:
        env = stack_env(
            redis_server.url,
            DASHBOARD_PASSWORD=PASSWORD,
            HANDLER_RETRY_INTERVALS="0",
            WEB_CONCURRENCY="1",
            SCALE_API_URL=sim.api_url,
            SCALE_API_KEY=API_KEY,
            RECONCILE_INTERVAL="3600",
        )
        with (
            gunicorn(env, port, logs / "gunicorn.log") as base,
            process(worker_args("--no-scheduler"), env, logs / "worker.log"),
            process([*worker_args()[:2], "callback_server", "reconcile", "--schedule"], env, logs / "clock.log"),
        ):
            yield Stack(base, sim, conn)
    conn.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run tests/install-system-packages.sh (make test does)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(
        http_credentials={"username": "ops", "password": PASSWORD}, viewport={"width": 1440, "height": 1000}
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    # A script error or a CSP refusal shows in the console (a missing favicon does too: not counted).
    tab.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    yield tab
    # No CSP violation or script error in any page the tests opened.
    assert errors == []
    context.close()


def test_login_is_required(browser: Browser, stack: Stack) -> None:
    for credentials in (None, {"username": "ops", "password": "wrong"}):
        context = browser.new_context(http_credentials=credentials)
        answer = context.request.get(f"{stack.base}/dashboard/")
        assert answer.status == 401 and "Basic" in answer.headers["www-authenticate"]
        assert "Scale callbacks" not in answer.text()
        context.close()


def test_find_a_failing_delivery_read_its_traceback_replay_it_and_watch_it_finish(page: Page, stack: Stack) -> None:
    stack.conn.set("test:fail:record", 2)  # both tries fail: the first and its one retry
    task_id = stack.create()
    delivery_id = wait_for(lambda: (stack.failed_ids() or [None])[0], timeout=30, what="the delivery to fail")

    page.goto(f"{stack.base}/dashboard/deliveries")
    page.fill("#search-q", task_id)
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#deliveries")).to_contain_text(task_id)
    page.locator("a.delivery-link").first.click()
    expect(page.locator("h1")).to_contain_text(delivery_id)
    expect(page.locator("h1 .state")).to_have_text("failed")
    expect(page.locator("pre.traceback").first).to_contain_text("RuntimeError: record told to fail")
    expect(page.locator("#timeline")).to_contain_text("attempt 2 failed")
    expect(page.locator("#body")).to_contain_text('"task_id"')

    page.goto(f"{stack.base}/dashboard/failed")
    page.locator(f'#failed input[value="{delivery_id}"]').check()
    page.get_by_role("button", name="Replay selected").click()
    confirm(page)
    expect(page.locator("#outcomes")).to_contain_text("requeued (2 tries)")

    # The delivery's page refreshes itself until the replay is done.
    page.goto(f"{stack.base}/dashboard/deliveries/{delivery_id}")
    expect(page.locator("h1 .state")).to_have_text("done", timeout=TIMEOUT_MS)
    expect(page.locator("#timeline")).to_contain_text("attempt 1 done")
    expect(page.locator("#body-gone")).to_be_visible()
    shoot(page, "console-delivery.png")


def test_replay_a_quarantined_body(page: Page, stack: Stack) -> None:
    body = load_fixture("categorization")
    body["task_id"] = body["task"]["task_id"] = "quarantined-then-fixed"
    broken = json.dumps(body).replace('"completed"', '"kompleted"', 1)
    answer = requests.post(
        f"{stack.base}/callback",
        data=broken,
        timeout=10,
        headers={"scale-callback-auth": LIVE_KEY, "Content-Type": "application/json"},
    )
    assert answer.json() == {"status": "quarantined"}
    quarantine_id = stack.conn.zrange("scb:quarantine", 0, 0)[0].decode()
    stack.conn.hset(f"scb:quarantine:{quarantine_id}", "body", json.dumps(body))  # as after a schema fix

    page.goto(f"{stack.base}/dashboard/quarantine")
    page.locator(f'#quarantine input[value="{quarantine_id}"]').check()
    page.get_by_role("button", name="Replay selected").click()
    confirm(page)
    expect(page.locator("#outcomes")).to_contain_text("queued: task quarantined-then-fixed")
    page.goto(f"{stack.base}/dashboard/deliveries?q=quarantined-then-fixed")
    expect(page.locator("#deliveries")).to_contain_text("replay")
    expect(page.locator("#deliveries .state").first).to_have_text("done", timeout=TIMEOUT_MS)


def test_fetch_a_task_whose_callback_was_lost(page: Page, stack: Stack) -> None:
    task_id = stack.create(faults=["drop"])
    wait_for(
        lambda: ScaleClient(API_KEY, api_instance_url=stack.sim.api_url).get_task(task_id).status == "completed",
        what="the task to complete",
    )
    page.goto(f"{stack.base}/dashboard/deliveries?q={task_id}")
    expect(page.locator("#not-found")).to_be_visible()
    page.locator('button[data-action="fetch"]').click()
    confirm(page)
    expect(page.locator("#outcomes")).to_contain_text("queued")
    page.goto(f"{stack.base}/dashboard/deliveries?q={task_id}")
    expect(page.locator("#deliveries")).to_contain_text("fetch")


def test_run_reconciliation_now_through_the_clock(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base}/dashboard/reconciliation")
    page.get_by_role("button", name="Run now").click()
    confirm(page)
    expect(page.locator("#outcomes")).to_contain_text("requested")
    page.goto(f"{stack.base}/dashboard/reconciliation")
    # The page refreshes itself until the clock reports the run it was asked for.
    expect(page.locator("#run-request")).to_contain_text("done", timeout=TIMEOUT_MS)
    expect(page.locator("#run-request")).to_contain_text("complete: seen")


def test_charts_render_with_data_and_the_audit_log_has_every_action(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base}/dashboard/")
    expect(page.locator('[data-count="failed"] .num')).to_have_text("0")
    callbacks = page.locator("svg.chart").first
    expect(callbacks).to_be_visible()
    assert callbacks.locator("rect.bar").count() >= 1
    box = callbacks.locator("rect.bar").first.bounding_box()
    assert box is not None and box["height"] > 0
    assert page.locator("svg.chart").nth(1).locator("rect.bar").count() >= 1  # handler runs, done and failed
    shoot(page, "console-overview.png")

    page.goto(f"{stack.base}/dashboard/audit")
    rows = page.locator("#audit tr")
    expect(rows).to_have_count(5)  # a header and four actions
    text = page.locator("#audit").inner_text()
    for action in ("failed-replay", "quarantine-replay", "fetch", "reconcile-run"):
        assert action in text, action
    shoot(page, "console-audit.png")

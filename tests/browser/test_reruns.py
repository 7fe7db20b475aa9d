"""The Reruns page in a real Chromium against the real stack: gunicorn, a worker running the rerun
test handlers, and the Scale simulator calling back.

An operator's morning after a fix: find the task, pick the fixed handler, start a rerun (a
confirmation first), follow it on the Reruns page until its task is done, see the delivery keep
its first attempt and gain the rerun's, and find the action in the audit log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from playwright.sync_api import Browser, Page, expect
from scaleapi import ScaleClient

from callback_server.embedded import RedisProcess, free_port
from scale_sim.config import Secret, SimSettings
from scale_sim.server import SimServer
from tests.support.browser import CHROMIUM, TIMEOUT_MS, confirm, shoot
from tests.support.keys import LIVE_KEY
from tests.support.processes import gunicorn, process, stack_env, wait_for, worker_args
from tests.support.tasks import CLIENT_TYPES, json_body

pytestmark = pytest.mark.slow

PASSWORD = "reruns-browser-test-password"
API_KEY = "live_reruns_browser_account"
HANDLERS = "tests.workers.rerun_handlers"
STORE = f"{HANDLERS}.store_boxes"


@dataclass
class Stack:
    base: str
    sim: SimServer
    conn: redis.Redis

    def runs(self) -> list[list[str]]:
        return [item.decode().split("|") for item in self.conn.lrange("test:rerun", 0, -1)]


@pytest.fixture(scope="module")
def stack(redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not redis_server.running:
        redis_server.start()
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushall()
    logs = tmp_path_factory.mktemp("reruns")
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
            CALLBACK_HANDLERS=HANDLERS,
            WEB_CONCURRENCY="1",
            SCALE_API_URL=sim.api_url,
            SCALE_API_KEY=API_KEY,
        )
        with (
            gunicorn(env, port, logs / "gunicorn.log") as base,
            process(worker_args("--no-scheduler"), env, logs / "worker.log"),
        ):
            yield Stack(base, sim, conn)
    conn.close()


@pytest.fixture(scope="module")
def page(browser_: Browser) -> Iterator[Page]:
    context = browser_.new_context(
        http_credentials={"username": "ops", "password": PASSWORD}, viewport={"width": 1440, "height": 1000}
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    yield tab
    assert errors == []  # no CSP violation or script error on any page
    context.close()


@pytest.fixture(scope="module")
def browser_() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run tests/install-system-packages.sh (make test does)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_rerun_a_fixed_handler_for_a_searched_task_and_follow_it(page: Page, stack: Stack) -> None:
    client = ScaleClient(API_KEY, api_instance_url=stack.sim.api_url)
    task_id = str(
        client.create_task(CLIENT_TYPES["categorization"], **json_body(f"{stack.base}/callback", "categorization")).id
    )
    first = wait_for(lambda: len(stack.runs()) >= 2 and stack.runs(), timeout=30, what="the callback's handlers")
    delivery_id = first[0][2]
    assert {run[0] for run in first} == {"store_boxes", "label_items"} and {run[3] for run in first} == {"callback"}

    page.goto(f"{stack.base}/dashboard/reruns")
    page.fill("#rerun-q", task_id)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#rerun-deliveries")).to_contain_text(task_id)
    page.locator(f'input[name="handlers"][value="{STORE}"]').check()
    page.get_by_role("button", name="Rerun for these 1 tasks").click()
    expect(page.locator("h1")).to_contain_text("Confirm")
    expect(page.locator("main")).to_contain_text(STORE)
    confirm(page)
    expect(page.locator("#outcomes")).to_contain_text("started for 1 tasks")
    found = re.search(r"rerun ([0-9a-f]{12})", page.locator("#outcomes").inner_text())
    assert found is not None
    run_id = found.group(1)

    page.goto(f"{stack.base}/dashboard/reruns")
    expect(page.locator("#reruns")).to_contain_text(run_id)
    expect(page.locator("#reruns")).to_contain_text("ops, console from")
    page.locator("a.run-link", has_text=run_id).click()
    # The page refreshes itself until the worker has listed, queued and run the task.
    expect(page.locator("#rerun-tasks .state").first).to_have_text("done", timeout=TIMEOUT_MS)
    expect(page.locator("#run-progress")).to_contain_text("listed 1 of 1, queued 1, skipped 0")
    expect(page.locator("#rerun-tasks")).to_contain_text(STORE)
    shoot(page, "console-rerun.png")

    again = stack.runs()[2:]
    assert again == [["store_boxes", task_id, delivery_id, "rerun", "completed"]]

    page.goto(f"{stack.base}/dashboard/deliveries/{delivery_id}")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("rerun queued")
    assert timeline.inner_text().count("attempt 1 done") == 2  # the callback's attempt is kept

    page.goto(f"{stack.base}/dashboard/audit")
    expect(page.locator("#audit")).to_contain_text("rerun")

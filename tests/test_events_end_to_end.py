"""A task's whole life through the real gunicorn receiver and a real worker process: every event is
one delivery, each handler that asked for it runs once, and a default handler sees only results."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from scaleapi import ScaleClient

from callback_server.embedded import RedisProcess, free_port
from scale_sim.server import SimServer
from tests.support.events import categorization_life
from tests.support.keys import LIVE_KEY
from tests.support.processes import gunicorn, process, stack_env, wait_for, worker_args
from tests.support.sims import prompt_sim_settings

pytestmark = pytest.mark.slow

API_KEY = "live_events_end_to_end"
LIFE = [
    ("completed", "-"),
    ("audit", "accepted"),
    ("audit", "fixed"),
    ("audit", "rejected"),
    ("recalled", "-"),
    ("completed", "-"),
]
"""(event, review status) of the six deliveries of a task's life, in order."""

SEEN = "test:events"
"""Where tests.workers.event_handlers notes its runs (not imported here: that would register its
handlers in this process too)."""


@pytest.fixture
def env(redis_server: RedisProcess, redis_conn: redis.Redis) -> dict[str, str]:
    return stack_env(redis_server.url, CALLBACK_HANDLERS="tests.workers.event_handlers")


def seen(conn: redis.Redis) -> list[tuple[str, str, str, str]]:
    return [tuple(item.decode().split(":", 3)) for item in conn.lrange(SEEN, 0, -1)]  # type: ignore[misc]


def check_life(conn: redis.Redis, expected_events: list[tuple[str, str]]) -> None:
    """Six deliveries; every handler ran once per delivery it asked for, and only those."""
    runs = wait_for(lambda: (s := seen(conn)) and len(s) >= 6 + 3 + 4 and s, timeout=60, what="every handler run")
    wait_for(lambda: conn.llen("rq:queue:callbacks") == 0, what="the queue to drain")
    runs = seen(conn)
    assert max(Counter(runs).values()) == 1, "a handler ran twice for one delivery"
    by_handler = {
        name: [(event, review) for handler, event, review, _ in runs if handler == name]
        for name in ("results", "everything", "reviews")
    }
    assert by_handler["everything"] == expected_events
    assert by_handler["results"] == [e for e in expected_events if e in (("completed", "-"), ("audit", "fixed"))]
    assert by_handler["reviews"] == [e for e in expected_events if e[0] in ("audit", "recalled")]
    assert len({delivery for *_, delivery in runs}) == 6


def test_a_whole_life_posted_to_the_real_receiver(env: dict[str, str], redis_conn: redis.Redis, tmp_path: Path) -> None:
    with (
        gunicorn(env, free_port(), tmp_path / "gunicorn.log") as base,
        process(worker_args(), env, tmp_path / "worker.log"),
    ):
        for _, body in categorization_life():
            for attempt in ("first", "Scale's retry"):
                answer = requests.post(
                    f"{base}/callback",
                    data=json.dumps(body),
                    timeout=10,
                    headers={"scale-callback-auth": LIVE_KEY, "Content-Type": "application/json"},
                )
                expected = "queued" if attempt == "first" else "duplicate"
                assert answer.json() == {"status": expected}, (attempt, body["status"])
        check_life(redis_conn, LIFE)


@pytest.fixture
def sim_stack(env: dict[str, str], tmp_path: Path) -> Iterator[ScaleClient]:
    with gunicorn(env, free_port(), tmp_path / "gunicorn.log") as base:
        settings = prompt_sim_settings(f"{base}/callback", tmp_path / "sim.sqlite3")
        with SimServer(settings) as sim, process(worker_args(), env, tmp_path / "worker.log"):
            yield ScaleClient(API_KEY, api_instance_url=sim.api_url)


def test_a_whole_life_driven_by_the_simulator(sim_stack: ScaleClient, redis_conn: redis.Redis) -> None:
    client = sim_stack
    task = client.create_task(
        _categorization(),
        instruction="Red or blue?",
        attachment_type="text",
        attachment="tomato",
        categories=["red", "blue"],
        project="kitchen",
    )
    api = client.api

    def delivered(count: int) -> bool:
        log = api.get_request(f"task/{task.id}/deliveries")
        return sum(1 for a in log["attempts"] if a["status_code"] == 200) >= count

    wait_for(lambda: delivered(1), what="the completion callback")
    steps = [
        ("audit", {"result": "accepted"}),
        ("audit", {"result": "fixed", "response": {"category": "blue"}}),
        ("audit", {"result": "rejected"}),
        ("recall", {"complete_in": None}),
        ("complete", {"response": {"category": "red"}}),
    ]
    for number, (action, data) in enumerate(steps, start=2):
        api.post_request(f"task/{task.id}/{action}", body=data)
        wait_for(lambda n=number: delivered(n), what=f"callback {number} ({action})")  # type: ignore[misc]
    check_life(redis_conn, LIFE)


def _categorization() -> object:
    from tests.support.tasks import CLIENT_TYPES

    return CLIENT_TYPES["categorization"]

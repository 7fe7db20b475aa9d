"""The page is inert for hostile task content, refuses cross-origin posts, and names the receiver's real URL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from scale_sim import create_app
from scale_sim.config import SimSettings
from scale_sim.origin import CrossOriginError, check_same_origin
from scale_sim.server import SimServer
from scale_sim.simulator import Simulator
from scale_sim.store import SCHEMA_VERSION, Store
from tests.support.keys import API_TEST_KEY
from tests.support.tasks import basic_auth, create, json_body

CB = "http://127.0.0.1:9/callback"
HOSTILE = " autofocus onfocus=alert(document.domain) x="


class _Attributes(HTMLParser):
    """Collects every attribute name a browser would see on every tag."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.names.add(name)
            self.values.append(value or "")


def attributes_of(html: str) -> _Attributes:
    parser = _Attributes()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("payload", [HOSTILE, '" autofocus onfocus="alert(1)', "'><img src=x onerror=alert(1)>"])
def test_a_hostile_category_stays_an_inert_value(client: FlaskClient, sim: Simulator, payload: str) -> None:
    task_id = create(client, categories=[payload, "plain"])
    for path in ("/", f"/sim/task/{task_id}"):
        html = client.get(path).get_data(as_text=True)
        parsed = attributes_of(html)
        assert not parsed.names & {"autofocus", "onfocus", "onerror", "x"}, path
        assert "<img" not in html
        # the value is still there, whole, as the data of an attribute (radio value, JSON placeholder)
        assert any(payload in value for value in parsed.values), path


def test_hostile_metadata_and_fields_are_escaped_on_the_task_page(client: FlaskClient) -> None:
    task_id = create(client, "datacollection", fields={'"><script>alert(1)</script>': "x"}, tags=["<b>t</b>"])
    html = client.get(f"/sim/task/{task_id}").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "<b>t</b>" not in html
    assert not attributes_of(html).names & {"onload", "onerror"}


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),  # curl, scripts: no Origin, no Referer
        ({"Origin": "http://localhost"}, True),
        ({"Referer": "http://localhost/sim/task/x"}, True),
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Referer": "http://evil.example/page"}, False),
        ({"Origin": "https://localhost"}, False),  # another scheme is another origin
        ({"Origin": "http://localhost:8091"}, False),
        ({"Origin": "http://evil.example", "Referer": "http://localhost/"}, False),  # Origin wins
    ],
)
def test_form_posts_from_another_origin_are_refused(
    client: FlaskClient, sim: Simulator, headers: dict[str, str], allowed: bool
) -> None:
    task_id = create(client)
    answer = client.post(f"/sim/task/{task_id}/complete", data={"category": "public"}, headers=headers)
    if allowed:
        assert answer.status_code == 303
        assert sim.store.get_task(task_id)["status"] == "completed"
    else:
        assert answer.status_code == 403
        assert "Cross-origin form posts are refused" in answer.get_data(as_text=True)
        assert sim.store.get_task(task_id)["status"] == "pending"


@pytest.mark.parametrize("action", ["complete", "error", "audit", "recall"])
def test_every_page_action_checks_the_origin(client: FlaskClient, action: str) -> None:
    task_id = create(client)
    answer = client.post(f"/sim/task/{task_id}/{action}", data={}, headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403


def test_the_json_api_refuses_a_foreign_origin_and_serves_scripts(client: FlaskClient) -> None:
    foreign = client.post(
        "/v1/task/categorization",
        json=json_body(CB, "categorization"),
        headers={**basic_auth(API_TEST_KEY), "Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    assert foreign.get_json() == {
        "status_code": 403,
        "error": "Cross-origin form posts are refused: the request came from http://evil.example, not from http://localhost",
    }
    assert create(client)  # no Origin header: allowed
    assert (
        client.get("/v1/tasks", headers={**basic_auth(API_TEST_KEY), "Origin": "http://evil.example"}).status_code
        == 200
    )


def test_check_same_origin_is_a_plain_function() -> None:
    check_same_origin("GET", "http://evil.example", None, scheme="http", host="127.0.0.1:8090")
    check_same_origin("POST", "http://127.0.0.1:8090", None, scheme="http", host="127.0.0.1:8090")
    with pytest.raises(CrossOriginError, match="http://evil.example"):
        check_same_origin("POST", "http://evil.example", None, scheme="http", host="127.0.0.1:8090")


def test_the_page_action_works_through_a_real_browser_like_post(start_sim: Callable[..., SimServer]) -> None:
    sim = start_sim(completion_delay=3600.0)
    created = requests.post(
        f"{sim.api_url}/task/categorization", json=json_body(CB, "categorization"), auth=(API_TEST_KEY, ""), timeout=10
    ).json()
    url = f"{sim.url}/sim/task/{created['task_id']}/error"
    refused = requests.post(url, data={}, headers={"Origin": "http://evil.example"}, timeout=10, allow_redirects=False)
    assert refused.status_code == 403
    ok = requests.post(url, data={"message": "boom"}, headers={"Origin": sim.url}, timeout=10, allow_redirects=False)
    assert ok.status_code == 303
    assert (
        requests.get(f"{sim.api_url}/task/{created['task_id']}", auth=(API_TEST_KEY, ""), timeout=10).json()["status"]
        == "error"
    )


# -- the receiver's real URL in examples ---------------------------------------------------------------


def test_the_example_uses_the_receivers_url(make_settings: Callable[..., SimSettings]) -> None:
    for settings, expected in (
        (make_settings(), "http://127.0.0.1:5000/callback"),
        (make_settings(default_callback_url="http://127.0.0.1:5123/callback"), "http://127.0.0.1:5123/callback"),
    ):
        app = create_app(settings)
        try:
            html = app.test_client().get("/").get_data(as_text=True)
            assert f"callback_url={expected}" in html and ":8000" not in html
        finally:
            app.extensions["scale_sim"].close()


# -- an old SQLite file still opens ---------------------------------------------------------------------

VERSION_1 = """
CREATE TABLE tasks (task_id TEXT PRIMARY KEY, account TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
    project TEXT, batch TEXT, created_ms INTEGER NOT NULL, completed_ms INTEGER, completed_at TEXT, complete_at REAL,
    faults TEXT NOT NULL, body TEXT NOT NULL, response TEXT, callback_succeeded INTEGER);
CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, copy INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, held_since REAL,
    wrong_key INTEGER NOT NULL, url TEXT NOT NULL);
CREATE TABLE attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, delivery_id INTEGER NOT NULL,
    copy INTEGER NOT NULL, attempt INTEGER NOT NULL, at TEXT NOT NULL, status_code INTEGER, error TEXT,
    duration_ms INTEGER NOT NULL, wrong_key INTEGER NOT NULL);
INSERT INTO tasks VALUES ('6b0b1e014fc6fb127e0052a1', 'acct', 'categorization', 'completed', NULL, NULL,
    1764354000000, 1764354060000, '2025-11-28T18:21:00.000Z', NULL, '{}',
    '{"task_id": "6b0b1e014fc6fb127e0052a1", "created_at": "2025-11-28T18:20:00.000Z", "callback_url": "http://r/cb",
      "type": "categorization", "urgency": "day", "params": {"categories": ["a", "b"]}, "metadata": {}}',
    '{"category": "a"}', NULL);
INSERT INTO deliveries (task_id, copy, state, next_attempt_at, wrong_key, url)
    VALUES ('6b0b1e014fc6fb127e0052a1', 1, 'pending', 0, 0, 'http://r/cb');
"""


def test_a_version_1_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(VERSION_1)
    store = Store(str(path))
    try:
        task = store.get_task("6b0b1e014fc6fb127e0052a1")
        assert task["updated_at"] == "2025-11-28T18:21:00.000Z"  # its completion, the last change it had
        assert task["audits"] == [] and task["tags"] == [] and task["project"] is None and task["is_test"] is False
        [delivery] = store.due_deliveries(1.0, set())
        assert delivery.event_id is None
        body = store.delivery_body(delivery)  # queued by version 1: the task as it is now
        assert b'"status": "completed"' in body and b'"category": "a"' in body
        assert store._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    finally:
        store.close()
    Store(str(path)).close()  # and opens again once migrated


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.nip.io:8090", "localhost.evil.example", "10.0.0.5:8090"])
def test_only_localhost_names_are_answered_against_dns_rebinding(client: FlaskClient, host: str) -> None:
    """A rebinding page's requests carry its own name as Host: it can neither read a page nor create a task."""
    page = client.get("/", headers={"Host": host})
    created = client.post(
        "/v1/task/categorization",
        json=json_body("http://attacker.example/", "categorization"),
        headers={**basic_auth(API_TEST_KEY), "Host": host},
    )
    api = client.get("/v1/tasks", headers={**basic_auth(API_TEST_KEY), "Host": host})
    assert (page.status_code, created.status_code, api.status_code) == (400, 400, 400)
    for name in ("localhost:8090", "127.0.0.1:8090", "sim.localhost"):
        assert client.get("/", headers={"Host": name}).status_code == 200, name

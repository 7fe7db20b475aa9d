"""Fixtures: a private redis-server per session, a clean database per test, the app and its client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from callback_server.config import Settings
from callback_server.embedded import RedisProcess
from callback_server.schemas import REFERENCE_TYPES  # noqa: F401 - re-exported for the tests
from callback_server.web import create_app

FIXTURES = Path(__file__).parent / "fixtures"
LIVE_KEY = "live-callback-key-0123456789"
OLD_LIVE_KEY = "old-live-key-being-rotated"
TEST_KEY = "test-callback-key-abcdef"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server of our own on a free port, so fault tests can stop and restart it."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_conn(redis_server: RedisProcess) -> Iterator[redis.Redis]:
    """A client on an empty database (the server is restarted if a fault test left it down)."""
    if not redis_server.running:
        redis_server.start()
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushall()
    yield conn
    conn.close()


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings as the tests use them; keyword arguments override single fields."""
    env = {
        "REDIS_URL": redis_url,
        "SCALE_CALLBACK_AUTH_KEY": f"{LIVE_KEY},{OLD_LIVE_KEY}",
        "SCALE_TEST_CALLBACK_AUTH_KEY": TEST_KEY,
        "REDIS_TIMEOUT": "0.5",
    }
    settings = Settings.from_env(env)
    if overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)
    return settings


@pytest.fixture
def settings(redis_conn: redis.Redis, redis_server: RedisProcess) -> Settings:
    """Settings pointing at the private Redis."""
    return make_settings(redis_server.url)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The receiver app (its background counter flush stopped after the test)."""
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["callback_server"].tally.stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the receiver app."""
    return app.test_client()


def load_fixture(name: str) -> dict[str, Any]:
    """A recorded callback body from tests/fixtures/."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def poison_body(depth: int = 1000) -> str:
    """A categorization callback whose response nests ``depth`` arrays: it parses, but breaks the
    identity's encoder (RecursionError), so the receiver quarantines it and a replay must keep it."""
    body = load_fixture("categorization")
    body["response"]["extra"] = []
    body["task"]["response"] = body["response"]
    return json.dumps(body).replace('"extra": []', '"extra": ' + "[" * depth + "]" * depth)

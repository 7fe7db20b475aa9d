"""Fixtures: a private redis-server per session, a clean database per test, the app and its client; and
the ``--soak`` option.

Nothing else: the helpers that tests share live in tests/support/ (test modules never import a conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from callback_server.config import Settings
from callback_server.embedded import RedisProcess
from callback_server.web import create_app
from tests.support.settings import make_settings

SOAK_OPTION = "--soak"
"""Runs the soak (tests marked ``soak``: minutes of traffic through killed processes); `make soak` passes it."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """The soak is opt-in by an option of its own: a ``-m`` the user gives would replace a ``-m 'not soak'``."""
    parser.addoption(SOAK_OPTION, action="store_true", default=False, help="run the soak tests (marked soak)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--soak``, every test marked ``soak`` is skipped, whatever ``-m`` or ``-k`` selected."""
    if config.getoption(SOAK_OPTION):
        return
    skip = pytest.mark.skip(reason=f"the soak takes minutes: pass {SOAK_OPTION} (make soak)")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)


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

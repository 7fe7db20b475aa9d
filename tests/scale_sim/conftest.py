"""Fixtures for the simulator's tests: settings on a temporary SQLite file, the app, servers and receivers.

Nothing here depends on the project's root conftest (no Redis is needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from scale_sim import create_app
from scale_sim.config import Secret, SimSettings
from scale_sim.server import SimServer
from scale_sim.simulator import Simulator
from tests.support.keys import CALLBACK_KEY
from tests.support.receiver import Receiver

FAST_TIME_SCALE = 0.0001
"""Retry schedule x 0.0001: the 20 tries of 24 hours take under 9 seconds."""


@pytest.fixture
def data_path(tmp_path: Path) -> str:
    """A fresh SQLite file per test (in a directory the store has to create)."""
    return str(tmp_path / "state" / "sim.sqlite3")


@pytest.fixture
def make_settings(data_path: str) -> Callable[..., SimSettings]:
    """Settings for tests: completion at once, fast retries, a known callback key; override any field."""

    def make(**overrides: Any) -> SimSettings:
        base = SimSettings(
            callback_auth_key=Secret(CALLBACK_KEY),
            completion_delay=0.0,
            time_scale=FAST_TIME_SCALE,
            data_path=data_path,
            callback_timeout=2.0,
        )
        return replace(base, **overrides)

    return make


@pytest.fixture
def app(make_settings: Callable[..., SimSettings]) -> Iterator[Flask]:
    """The app with its scheduler not started, so tasks stay pending until a test moves them on."""
    app = create_app(make_settings(completion_delay=3600.0))
    app.config["TESTING"] = True
    yield app
    app.extensions["scale_sim"].close()


@pytest.fixture
def sim(app: Flask) -> Simulator:
    """The app's simulator (store, settings, run_pending)."""
    simulator: Simulator = app.extensions["scale_sim"]
    return simulator


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A callback receiver on a free loopback port that answers 200 unless scripted otherwise."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def start_sim(make_settings: Callable[..., SimSettings]) -> Iterator[Callable[..., SimServer]]:
    """Start simulators (HTTP on a free port, scheduler running); all are stopped after the test."""
    started: list[SimServer] = []

    def start(settings: SimSettings | None = None, **overrides: Any) -> SimServer:
        server = SimServer(settings or make_settings(**overrides)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()  # idempotent: a test may have stopped it already

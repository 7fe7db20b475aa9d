"""Worker fixtures: the recording handlers, registered for one test and removed after."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
import redis

from callback_server.config import Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from tests.conftest import load_fixture
from workers.registry import registry

RECORDING = "tests.workers.recording_handlers"


@pytest.fixture
def recording() -> Iterator[ModuleType]:
    """The recording handlers, registered for this test only."""
    importlib.import_module("workers.handlers")  # the examples stay registered after the restore
    saved = registry.snapshot()
    loaded = sys.modules.get(RECORDING)
    module = importlib.reload(loaded) if loaded is not None else importlib.import_module(RECORDING)
    yield module
    registry.restore(saved)


def enqueue(settings: Settings, conn: redis.Redis, name: str, **changes: object) -> Delivery:
    """Queue a recorded callback through the real accept path."""
    body = load_fixture(name)
    body["task"].update(changes)
    delivery = Delivery.from_body(body, mode="live")
    assert DeliveryQueue.from_settings(settings, conn).accept(delivery)
    return delivery


def effects(conn: redis.Redis, key: str = "test:effects") -> list[str]:
    """What the recording handlers noted, in order."""
    return [item.decode() for item in conn.lrange(key, 0, -1)]

"""Worker fixtures: the recording handlers, registered for one test and removed after."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.support.handlers import RECORDING
from workers.registry import registry


@pytest.fixture
def recording() -> Iterator[ModuleType]:
    """The recording handlers, registered for this test only."""
    importlib.import_module("workers.handlers")  # the examples stay registered after the restore
    saved = registry.snapshot()
    loaded = sys.modules.get(RECORDING)
    module = importlib.reload(loaded) if loaded is not None else importlib.import_module(RECORDING)
    yield module
    registry.restore(saved)

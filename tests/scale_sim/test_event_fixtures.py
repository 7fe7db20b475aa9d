"""The recorded event bodies in tests/fixtures/events/ are what the simulator sends, byte for byte in content.

Three types (a 2016 one, a modern one, a file-result one) each go through every event with a fixed
clock and fixed task ids, so the bodies are deterministic. The receiver's tests use the files as
recorded callbacks. To write them again after a deliberate change of the simulator's bodies:

    SCALE_SIM_RECORD_FIXTURES=1 .venv/bin/python -m pytest tests/scale_sim/test_event_fixtures.py
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scale_sim.auth import account_for_key
from scale_sim.config import SimSettings
from scale_sim.responses import generate_response
from scale_sim.simulator import Simulator
from scale_sim.tasks import timestamp_ms
from scale_sim.validation import validate_task
from tests.support.events import assert_event_body
from tests.support.keys import API_TEST_KEY

EVENTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "events"
EVENTS = ("completed", "error", "audit_accepted", "audit_fixed", "audit_rejected", "recalled")
CALLBACK_URL = "http://127.0.0.1:5000/callback"
START = timestamp_ms("2026-11-28T18:20:00.000Z")
MINUTE, HOUR = 60_000, 3_600_000

REQUESTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "categorization": (
        "5f127f6f26831d0010e9d8a1",
        "5f127f6f26831d0010e9d8a2",
        {
            "instruction": "Is this company public or private?",
            "attachment_type": "website",
            "attachment": "https://www.example.com/",
            "categories": ["public", "private"],
        },
    ),
    "imageannotation": (
        "5f127f6f26831d0010e9d8b1",
        "5f127f6f26831d0010e9d8b2",
        {
            "instruction": "Draw a box around each car and a polygon around each traffic sign.",
            "attachment": "https://example.com/images/street-0042.jpg",
            "geometries": {
                "box": {"objects_to_annotate": ["car", "truck"], "min_height": 10, "min_width": 10},
                "polygon": {"objects_to_annotate": ["traffic sign"]},
            },
            "annotation_attributes": {
                "occluded": {"type": "category", "description": "Is it occluded?", "choices": ["yes", "no"]}
            },
        },
    ),
    "videoannotation": (
        "5f127f6f26831d0010e9d8c1",
        "5f127f6f26831d0010e9d8c2",
        {
            "instruction": "Track every car across the frames.",
            "attachments": [
                "https://example.com/frames/drive-0001.jpg",
                "https://example.com/frames/drive-0002.jpg",
                "https://example.com/frames/drive-0003.jpg",
            ],
            "geometries": {"box": {"objects_to_annotate": ["car"]}},
            "frame_rate": 2,
        },
    ),
}
"""Per type: the id of the task that completes, is audited and recalled; the id of the one that errors; the request."""


@dataclass
class Clock:
    """A clock the test sets before each step."""

    now: int = START

    def __call__(self) -> int:
        return self.now


def record(data_path: str) -> dict[str, dict[str, Any]]:
    """Every event body of the three types, keyed by file name (``<type>_<event>``)."""
    clock = Clock()
    ids: list[str] = []
    sim = Simulator(
        SimSettings(completion_delay=3600.0, data_path=data_path, seed=0),
        clock=clock,
        new_id=lambda created_ms: ids.pop(0),
    )
    account = account_for_key(API_TEST_KEY)
    bodies: dict[str, dict[str, Any]] = {}
    try:
        for offset, (task_type, (main_id, error_id, params)) in enumerate(REQUESTS.items()):
            base = START + offset * 10 * MINUTE
            request = {
                **params,
                "callback_url": CALLBACK_URL,
                "project": "fixtures-demo",
                "batch": "batch-2026-11-28",
                "tags": ["fixtures", task_type],
            }
            ids[:] = [main_id, error_id]
            clock.now = base
            sim.create_task(account, validate_task(task_type, {**request, "unique_id": f"{task_type}-0001"}))
            clock.now = base + 1_000
            sim.create_task(account, validate_task(task_type, {**request, "unique_id": f"{task_type}-0002"}))
            clock.now = base + 1_250
            sim.error_task(error_id)
            clock.now = base + 90_512
            sim.complete_task(main_id, generate_response(sim.get_task(account, main_id), 0))
            for hours, result, source in (
                (1, "accepted", "customer"),
                (2, "fixed", "scale"),
                (3, "rejected", "customer"),
            ):
                clock.now = base + hours * HOUR + 7_204
                sim.audit_task(main_id, result, source=source)
            clock.now = base + 4 * HOUR + 33_019
            sim.recall_task(main_id, complete_in=None)
            for task_id in (main_id, error_id):
                for name, body in sim.store.events(task_id):
                    bodies[f"{task_type}_{name}"] = json.loads(body)
    finally:
        sim.close()
    return bodies


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    bodies = record(str(tmp_path_factory.mktemp("fixtures") / "sim.sqlite3"))
    if os.environ.get("SCALE_SIM_RECORD_FIXTURES") == "1":
        EVENTS_DIR.mkdir(parents=True, exist_ok=True)
        for name, body in bodies.items():
            (EVENTS_DIR / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n")
    return bodies


def test_every_event_of_every_type_is_recorded(recorded: dict[str, dict[str, Any]]) -> None:
    assert set(recorded) == {f"{task_type}_{event}" for task_type in REQUESTS for event in EVENTS}


@pytest.mark.parametrize("task_type", list(REQUESTS))
@pytest.mark.parametrize("event", EVENTS)
def test_the_fixture_file_is_what_the_simulator_sends(
    recorded: dict[str, dict[str, Any]], task_type: str, event: str
) -> None:
    name = f"{task_type}_{event}"
    body = recorded[name]
    assert_event_body(body, event)
    on_disk = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    assert on_disk == body, f"{name}.json is stale: record again (see this module's docstring)"


def test_the_recording_is_deterministic(tmp_path: Path, recorded: dict[str, dict[str, Any]]) -> None:
    assert record(str(tmp_path / "again.sqlite3")) == recorded

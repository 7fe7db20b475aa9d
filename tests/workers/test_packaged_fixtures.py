"""The fixtures ``workers.testing.load_fixture`` ships (workers/fixtures/) are what the simulator sends.

Every type the receiver types for which the simulator makes tasks (the 2016 seven and today's common
seven, file-result types included) goes through every event: completed; an error at creation; audits
accepted, fixed, rejected and commented; a recall; and a cancellation (which Scale does not call back
with: its body is the task as the list API answers, as the reconciler queues it). A fixed clock,
fixed task ids and the simulator's seed make the bodies deterministic. To write them again after a
deliberate change of the simulator's bodies:

    SCALE_SIM_RECORD_FIXTURES=1 .venv/bin/python -m pytest tests/workers/test_packaged_fixtures.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from callback_server.deliveries import Delivery
from callback_server.schemas import COMMON_TYPES, REFERENCE_TYPES, validate_callback
from scale_sim.auth import account_for_key
from scale_sim.config import SimSettings
from scale_sim.responses import generate_response
from scale_sim.simulator import Simulator
from scale_sim.tasks import callback_body, timestamp_ms
from scale_sim.validation import validate_task
from tests.support.keys import API_LIVE_KEY
from tests.support.tasks import json_body
from workers import testing

FIXTURES_DIR = Path(testing.__file__).resolve().parent / "fixtures"
TYPES = (*REFERENCE_TYPES, *COMMON_TYPES)
EVENTS = (
    "completed",
    "error",
    "audit_accepted",
    "audit_fixed",
    "audit_rejected",
    "audit_commented",
    "recalled",
    "canceled",
)
CALLBACK_URL = "https://example.com/scale/callback"
START = timestamp_ms("2026-12-01T09:00:00.000Z")
MINUTE, HOUR = 60_000, 3_600_000


def task_id(task_type: str, role: str) -> str:
    """A fixed, Scale-like (24 hex digits) id per type and role."""
    return hashlib.sha256(f"{task_type}:{role}".encode()).hexdigest()[:24]


class Clock:
    """A clock the recording sets before each step."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now


def record(data_path: str) -> dict[str, dict[str, Any]]:
    """Every event body of every type, keyed ``<type>/<event>``."""
    clock = Clock()
    ids: list[str] = []
    sim = Simulator(
        SimSettings(completion_delay=3600.0, data_path=data_path, seed=0),
        clock=clock,
        new_id=lambda created_ms: ids.pop(0),
    )
    account = account_for_key(API_LIVE_KEY)
    bodies: dict[str, dict[str, Any]] = {}
    try:
        for offset, task_type in enumerate(TYPES):
            base = START + offset * 10 * MINUTE
            main, failing, canceled = (task_id(task_type, role) for role in ("main", "error", "canceled"))
            request = {
                **json_body(CALLBACK_URL, task_type),
                "project": "handler-kit",
                "batch": "batch-2026-12-01",
                "tags": ["fixtures", task_type],
            }
            ids[:] = [main, failing, canceled]
            for n in range(3):
                clock.now = base + n * 1_000
                sim.create_task(account, validate_task(task_type, {**request, "unique_id": f"{task_type}-{n + 1:04d}"}))
            clock.now = base + 1_250
            sim.error_task(failing)
            clock.now = base + 2_500
            sim.cancel_task(account, canceled)
            clock.now = base + 90_512
            sim.complete_task(main, generate_response(sim.get_task(account, main), 0))
            for hours, result, source in (
                (1, "accepted", "customer"),
                (2, "fixed", "scale"),
                (3, "rejected", "customer"),
                (4, "commented", "customer"),
            ):
                clock.now = base + hours * HOUR + 7_204
                sim.audit_task(main, result, source=source)
            clock.now = base + 5 * HOUR + 33_019
            sim.recall_task(main, complete_in=None)
            for recorded in (main, failing):
                for name, body in sim.store.events(recorded):
                    bodies[f"{task_type}/{name}"] = json.loads(body)
            bodies[f"{task_type}/canceled"] = json.loads(callback_body(sim.store.callback_task(canceled)))
    finally:
        sim.close()
    return bodies


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    bodies = record(str(tmp_path_factory.mktemp("fixtures") / "sim.sqlite3"))
    if os.environ.get("SCALE_SIM_RECORD_FIXTURES") == "1":
        for name, body in bodies.items():
            path = FIXTURES_DIR / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(body, indent=2) + "\n")
    return bodies


def test_every_event_of_every_type_is_recorded(recorded: dict[str, dict[str, Any]]) -> None:
    assert set(recorded) == {f"{task_type}/{event}" for task_type in TYPES for event in EVENTS}
    shipped = {f"{path.parent.name}/{path.stem}" for path in FIXTURES_DIR.glob("*/*.json")}
    assert shipped == set(recorded)


@pytest.mark.parametrize("task_type", TYPES)
def test_the_shipped_files_are_what_the_simulator_sends_and_the_receiver_accepts(
    recorded: dict[str, dict[str, Any]], task_type: str
) -> None:
    for event in EVENTS:
        name = f"{task_type}/{event}"
        on_disk = json.loads((FIXTURES_DIR / f"{name}.json").read_text())
        assert on_disk == recorded[name], f"{name}.json is stale: record again (see this module's docstring)"
        assert validate_callback(on_disk) == {}, name
        delivery = Delivery.from_body(on_disk, mode="live")
        expected = event.split("_")[0]
        assert delivery.event.name == expected, name
        if expected == "audit":
            assert delivery.event.review_status == event.split("_")[1], name


def test_the_recording_is_deterministic(tmp_path: Path, recorded: dict[str, dict[str, Any]]) -> None:
    assert record(str(tmp_path / "again.sqlite3")) == recorded

"""The example handlers in workers/handlers/ log one line for anything the receiver accepts.

params and metadata pass the receiver unvalidated, a valid number can be huge, and error,
recall and cancellation events carry no response: none of that may make an example raise (it
would be retried for hours) or lose its log line to a formatting error.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from callback_server.deliveries import Delivery
from tests.conftest import REFERENCE_TYPES, load_fixture
from workers.payloads import Task, build_task

HANDLERS: dict[str, Callable[[Any], None]] = {
    name: getattr(importlib.import_module(f"workers.handlers.{name}"), f"log_{name}") for name in REFERENCE_TYPES
}
"""Each example handler, by the 2016 type it logs (one module per type, ``log_<type>`` in it)."""


def task_of(name: str, change: Callable[[dict[str, Any]], None] | None = None) -> Task:
    body = load_fixture(name)
    if change is not None:
        change(body)
    body = json.loads(json.dumps(body))  # as it comes off the queue
    return build_task(Delivery.from_body(body, mode="live").as_job_arg())


def run_and_read_log(name: str, task: Task, caplog: pytest.LogCaptureFixture) -> str:
    """Run the example and return its one log line, formatted (a formatting error fails the test)."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=f"workers.handlers.{name}"):
        HANDLERS[name](task)
    records = [r for r in caplog.records if r.name == f"workers.handlers.{name}"]
    assert len(records) == 1
    message = records[0].getMessage()  # raises where logging would have lost the line
    assert task.task_id in message
    return message


def set_params(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["task"]["params"][key] = value

    return change


def set_response(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["response"][key] = value
        if isinstance(body["task"].get("response"), dict):
            body["task"]["response"][key] = value

    return change


def canceled(body: dict[str, Any]) -> None:
    body["task"]["status"] = "canceled"
    body["response"] = None
    body["task"].pop("response", None)


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_each_example_logs_its_recorded_fixture(name: str, caplog: pytest.LogCaptureFixture) -> None:
    assert run_and_read_log(name, task_of(name), caplog)


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_each_example_logs_an_event_without_a_response(name: str, caplog: pytest.LogCaptureFixture) -> None:
    task = task_of(name, canceled)
    assert task.response is None
    assert "canceled" in run_and_read_log(name, task, caplog)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("one.jpg", "of 1 attachments"),
        ({"a": "x.jpg", "b": "y.jpg"}, "of 2 attachments"),
        (7, "of 1 attachments"),
        (None, "of 0 attachments"),
        ([["nested"]], "of 1 attachments"),
    ],
)
def test_comparison_takes_any_attachments_value(value: Any, shown: str, caplog: pytest.LogCaptureFixture) -> None:
    assert shown in run_and_read_log("comparison", task_of("comparison", set_params("attachments", value)), caplog)


@pytest.mark.parametrize(
    ("duration", "shown"),
    [(10**400, "an overlong length"), (1e308, "words over 1"), (0, "0.0 s"), (None, "unknown length")],
)
def test_audiotranscription_keeps_its_line_for_any_duration(
    duration: Any, shown: str, caplog: pytest.LogCaptureFixture
) -> None:
    task = task_of("audiotranscription", set_response("duration", duration))
    assert shown in run_and_read_log("audiotranscription", task, caplog)


def test_many_or_odd_names_are_listed_briefly(caplog: pytest.LogCaptureFixture) -> None:
    fields = {f"field{i:04d}": i if i % 2 else None for i in range(1000)}
    message = run_and_read_log("datacollection", task_of("datacollection", set_response("fields", fields)), caplog)
    assert "500 of 1000 fields found" in message and "+980 more" in message
    boxes = [{"left": 1, "top": 1, "width": 1, "height": 1, "label": f"z{i}"} for i in range(300)] + [
        {"left": 1, "top": 1, "width": 1, "height": 1}
    ]
    message = run_and_read_log("annotation", task_of("annotation", set_response("annotations", boxes)), caplog)
    assert "301 boxes" in message and "unlabelled=1" in message and "+281 more" in message
    message = run_and_read_log("phonecall", task_of("phonecall", set_response("fields", None)), caplog)
    assert "fields=none" in message

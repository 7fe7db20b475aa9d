"""The example handlers in workers/handlers/ log one line for anything the receiver accepts.

params and metadata pass the receiver unvalidated, a valid number can be huge, and error,
recall and cancellation events carry no response: none of that may make an example raise (it
would be retried for hours) or lose its log line to a formatting error.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from callback_server.deliveries import Delivery
from callback_server.events import Event
from callback_server.schemas import REFERENCE_TYPES
from tests.support.fixtures import load_fixture
from workers.payloads import Task, build_task
from workers.registry import registry
from workers.testing import load_fixture as load_packaged
from workers.testing import make_task, run_handlers

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


# --- today's common types, through workers.testing (as a handler author would test a copy) ---------

MODERN_EXAMPLES = {
    "imageannotation": "workers.handlers.imageannotation",
    "textcollection": "workers.handlers.textcollection",
    "namedentityrecognition": "workers.handlers.namedentityrecognition",
    "documenttranscription": "workers.handlers.documenttranscription",
    "videoannotation": "workers.handlers.file_results",
    "videoplaybackannotation": "workers.handlers.file_results",
    "lidarannotation": "workers.handlers.file_results",
}
"""Today's common types and the example module that serves each."""

ALL_EVENTS = [
    ("completed", None),
    ("audit", "accepted"),
    ("audit", "fixed"),
    ("audit", "rejected"),
    ("audit", "commented"),
    ("error", None),
    ("recalled", None),
    ("canceled", None),
]


@pytest.mark.parametrize("task_type", sorted(MODERN_EXAMPLES))
def test_each_modern_example_serves_its_results_and_logs_one_line(
    task_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    importlib.import_module("workers.handlers")
    module = MODERN_EXAMPLES[task_type]
    mine = [r.name for r in registry.registrations() if r.name.startswith(module + ".")]
    for event, review_status in ALL_EVENTS:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=module):
            outcome = run_handlers(load_packaged(task_type, event, review_status), handlers=mine)
        assert outcome.failed == {}, (event, review_status)
        lines = [r.getMessage() for r in caplog.records if r.name == module]
        if Event(event, review_status).carries_result or (event == "error" and task_type == "imageannotation"):
            assert len(outcome.ran) == len(lines) == 1, (event, review_status, outcome)
            assert make_task(load_packaged(task_type, event, review_status)).task_id in lines[0]
        else:
            assert outcome.unhandled and lines == [], (event, review_status)


def test_the_modern_examples_say_what_the_result_holds_and_never_a_url(caplog: pytest.LogCaptureFixture) -> None:
    def line(task_type: str, event: str = "completed") -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=MODERN_EXAMPLES[task_type]):
            run_handlers(load_packaged(task_type, event))
        (record,) = [r for r in caplog.records if r.name == MODERN_EXAMPLES[task_type]]
        return record.getMessage()

    importlib.import_module("workers.handlers")
    assert re.search(r"\d+ shapes \(box=\d+, polygon=\d+\) labelled ", line("imageannotation"))
    assert "3 fields (ceo, employees, sector)" in line("textcollection")
    assert re.search(r"\d+ entities \(.*\), \d+ relationships", line("namedentityrecognition"))
    assert re.search(r"\d+ fields on \d+ pages \((total, vendor|total|vendor)", line("documenttranscription"))
    playback = line("videoplaybackannotation")
    assert "result file on " in playback and ", events file on " in playback
    error = line("imageannotation", "error")
    assert "could not be created" in error and "answered 403" in error
    for text in (playback, error, line("lidarannotation")):
        assert "https://" not in text and "?" not in text  # a signed URL's query is a credential

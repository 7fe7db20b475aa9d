"""Typed task objects built from the recorded callbacks of every type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import TASK_TYPES, load_fixture
from workers import payloads


def delivery(name: str) -> dict[str, Any]:
    return {"delivery_id": "d" * 32, "mode": "live", "source": "callback", "body": load_fixture(name)}


@pytest.mark.parametrize("name", TASK_TYPES)
def test_every_type_builds_its_own_dataclass(name: str) -> None:
    task = payloads.build_task(delivery(name))
    assert type(task) is payloads.TASK_CLASSES[name]
    body = load_fixture(name)
    assert task.task_id == body["task_id"]
    assert task.type == name
    assert task.status == "completed"
    assert task.params == body["task"]["params"]
    assert task.metadata == {}
    assert task.delivery_id == "d" * 32
    assert isinstance(task.completed_at, datetime) and task.completed_at.tzinfo == UTC
    assert isinstance(task.created_at, datetime)
    assert task.raw == body


def test_categorization_fields() -> None:
    task = payloads.build_task(delivery("categorization_multiple"))
    assert isinstance(task, payloads.CategorizationTask)
    assert task.response.category == ["Blue Cross", "Red Cross"]
    assert task.response.category_id == ["123", "124"]
    assert task.response.categories == ["Blue Cross", "Red Cross"]
    single = payloads.build_task(delivery("categorization"))
    assert single.response.categories == ["red"]
    assert single.response.category_id is None


def test_fields_types() -> None:
    assert payloads.build_task(delivery("transcription")).response.fields["title"] == "Some Title"
    assert payloads.build_task(delivery("datacollection")).response.fields["hiring_page"].startswith("https://")


def test_phonecall_and_comparison() -> None:
    call = payloads.build_task(delivery("phonecall")).response
    assert (call.outcome, call.choice, call.fields) == ("success", "He is happy", {"email": "alex@example.com"})
    comparison = payloads.build_task(delivery("comparison")).response
    assert comparison.choice == "yes"
    assert comparison.fields == {"difference": "The patterns are identical."}


def test_annotation_boxes_are_typed() -> None:
    boxes = payloads.build_task(delivery("annotation")).response.annotations
    assert boxes[0] == payloads.Box(left=123, top=10, width=121, height=39, label="big cow")
    assert len(boxes) == 2


def test_audiotranscription_success_and_error() -> None:
    ok = payloads.build_task(delivery("audiotranscription"))
    assert ok.response.ok and ok.response.duration == pytest.approx(5.106188)
    assert ok.is_test is True
    failed = payloads.build_task(delivery("audiotranscription_error"))
    assert not failed.response.ok
    assert failed.response.error == "The audio file cannot be loaded."
    assert failed.is_test is False


def test_unknown_type_keeps_the_raw_response() -> None:
    task = payloads.build_task(delivery("unknown_type"))
    assert isinstance(task, payloads.UnknownTask)
    assert task.response == load_fixture("unknown_type")["response"]


def test_unknown_fields_in_a_box_are_ignored_by_the_dataclass_but_kept_in_raw() -> None:
    d = delivery("annotation")
    d["body"]["response"]["annotations"][0]["confidence"] = 0.5
    task = payloads.build_task(d)
    assert task.response.annotations[0].left == 123
    assert task.raw["response"]["annotations"][0]["confidence"] == 0.5

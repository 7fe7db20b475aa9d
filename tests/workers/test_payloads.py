"""Typed task objects built from the recorded callbacks of every type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from callback_server.deliveries import Delivery
from callback_server.schemas import REFERENCE_TYPES
from tests.support.fixtures import load_fixture
from workers import payloads


def delivery(name: str) -> dict[str, Any]:
    """The job argument a worker gets for a recorded callback (its delivery id made recognisable)."""
    return {**Delivery.from_body(load_fixture(name), mode="live").as_job_arg(), "delivery_id": "d" * 32}


@pytest.mark.parametrize("name", REFERENCE_TYPES)
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


# --- events and today's types -----------------------------------------------------------------------


def wrap(body: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    """The job argument of a body, as the accept path writes it (its event derived), with ``envelope`` over it."""
    return {**Delivery.from_body(body, mode="live").as_job_arg(), "delivery_id": "e" * 32, **envelope}


def test_audit_fields_and_event_are_typed() -> None:
    from tests.support.events import categorization_life

    _, body = categorization_life()[2]
    task = payloads.build_task(wrap(body))
    assert (task.event, task.review_status) == ("audit", "fixed")
    assert task.customer_review_status == "fixed"
    assert [a.result for a in task.audits] == ["accepted", "fixed"]
    assert task.audits[0].audited_at == datetime(2016, 6, 24, 8, tzinfo=UTC)
    assert task.audits[0].source == "customer" and task.audits[0].audited_by == "reviewer@example.com"
    assert task.project == "kitchen" and task.tags == ["a"]
    assert task.updated_at == datetime(2016, 6, 24, 9, tzinfo=UTC)
    assert isinstance(task.response, payloads.CategorizationResponse)
    assert task.response.categories == ["blue"]


def test_the_event_written_in_the_job_is_the_one_a_handler_sees() -> None:
    from tests.support.events import categorization_life

    _, body = categorization_life()[1]
    assert payloads.build_task(wrap(body)).event == "audit"
    assert payloads.build_task(wrap(body, event="audit", review_status="accepted")).review_status == "accepted"


def test_error_event_is_typed_and_has_no_response() -> None:
    from tests.support.events import error_callback

    task = payloads.build_task(wrap(error_callback("annotation")))
    assert isinstance(task, payloads.AnnotationTask)
    assert task.event == "error" and task.response is None and task.completed_at is None
    assert task.error == payloads.TaskError(
        message="One or more attachments could not be downloaded.",
        attachments=[payloads.AttachmentError(url="https://example.com/private.png", status_code=403)],
    )


def test_recall_has_no_response() -> None:
    from tests.support.events import categorization_life

    _, body = categorization_life()[4]
    task = payloads.build_task(wrap(body))
    assert (task.event, task.response, task.error) == ("recalled", None, None)


def _modern(task_type: str, response: dict[str, Any]) -> payloads.Task:
    body = load_fixture("categorization")
    body["task"].update(type=task_type, response=response, params={})
    body["response"] = response
    return payloads.build_task(wrap(body))


def test_imageannotation_shapes() -> None:
    task = _modern(
        "imageannotation",
        {
            "annotations": [
                {
                    "type": "box",
                    "label": "car",
                    "uuid": "u1",
                    "attributes": {"occluded": "no"},
                    "left": 1,
                    "top": 2,
                    "width": 3,
                    "height": 4,
                },
                {"type": "polygon", "label": "road", "uuid": "u2", "vertices": [{"x": 0, "y": 0}, {"x": 5, "y": 1}]},
                {"type": "line", "label": "lane", "vertices": [{"x": 1, "y": 1}]},
                {"type": "point", "label": "eye", "x": 7, "y": 8},
                {"type": "cuboid", "label": "truck", "vertices": [{"x": 1, "y": 2, "type": "vertex"}]},
                {"type": "ellipse", "label": "ball", "x": 1, "y": 2, "rx": 3, "ry": 4, "angle": 0.5},
                {"type": "hologram", "label": "future", "depth": 3},
            ],
            "global_attributes": {"weather": "rain"},
        },
    )
    assert isinstance(task, payloads.ImageannotationTask)
    shapes = task.response.annotations
    assert shapes[0] == payloads.BoxShape(
        type="box",
        label="car",
        uuid="u1",
        attributes={"occluded": "no"},
        raw=shapes[0].raw,
        left=1,
        top=2,
        width=3,
        height=4,
    )
    assert task.response.boxes == [shapes[0]]
    assert [p.vertices for p in task.response.polygons] == [
        [payloads.Point(0, 0), payloads.Point(5, 1)],
        [payloads.Point(1, 1)],
    ]
    assert isinstance(shapes[3], payloads.PointShape) and (shapes[3].x, shapes[3].y) == (7, 8)
    assert isinstance(shapes[4], payloads.CuboidShape) and shapes[4].vertices[0]["type"] == "vertex"
    assert isinstance(shapes[5], payloads.EllipseShape) and shapes[5].angle == 0.5
    assert type(shapes[6]) is payloads.Shape and shapes[6].raw["depth"] == 3
    assert task.response.global_attributes == {"weather": "rain"}


def test_textcollection_ner_document_and_file_results() -> None:
    text = _modern("textcollection", {"annotations": {"title": "A", "tags": [{"name": "x"}]}})
    assert text.response == payloads.TextcollectionResponse({"title": "A", "tags": [{"name": "x"}]})
    ner = _modern(
        "namedentityrecognition",
        {
            "annotations": [{"id": "e1", "start": 0, "end": 4, "text": "Paris", "label": "city"}],
            "relationships": [{"id": "r1", "source_ref": "e1", "target_ref": "e1", "name": "self"}],
        },
    )
    assert ner.response.annotations == [payloads.Entity("e1", 0, 4, "Paris", "city")]
    assert ner.response.relationships == [payloads.Relationship("r1", "e1", "e1", "self")]
    doc = _modern(
        "documenttranscription",
        {
            "annotations": [
                {
                    "uuid": "d1",
                    "page": 1,
                    "label": "total",
                    "text": "42",
                    "location": {"type": "box", "top": 1},
                    "refs": [],
                }
            ]
        },
    )
    assert doc.response.annotations[0].text == "42" and doc.response.annotations[0].raw["refs"] == []
    video = _modern(
        "videoplaybackannotation", {"annotations": {"url": "https://x/a.json"}, "events": {"url": "https://x/e.json"}}
    )
    assert isinstance(video, payloads.FileResultTask)
    assert (video.response.result_url, video.response.events_url) == ("https://x/a.json", "https://x/e.json")


def test_annotation_boxes_keep_uuid_and_attributes() -> None:
    body = load_fixture("annotation")
    body["response"]["annotations"][0].update(uuid="b-1", attributes={"colour": "red"})
    task = payloads.build_task(wrap(body))
    assert task.response.annotations[0].uuid == "b-1"
    assert task.response.annotations[0].attributes == {"colour": "red"}


def test_categorization_taxonomies() -> None:
    task = _modern("categorization", {"taxonomies": {"colour": ["red", "blue"], "size": "big"}})
    assert task.response.taxonomies == {"colour": ["red", "blue"], "size": ["big"]}
    assert task.response.categories == ["red", "blue", "big"]
    assert task.response.category is None

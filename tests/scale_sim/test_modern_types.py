"""Today's task types: their documented parameters, specific 400s, generated responses of the documented shapes."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from scaleapi import ScaleClient
from scaleapi.exceptions import ScaleDuplicateResource, ScaleInvalidRequest
from scaleapi.tasks import TaskType

from scale_sim.exceptions import InvalidRequestError
from scale_sim.responses import generate_response
from scale_sim.server import SimServer
from scale_sim.validation import COMMON_TYPES, validate_task
from tests.support.keys import API_TEST_KEY
from tests.support.processes import wait_for
from tests.support.tasks import FORM, MODERN_BODIES, basic_auth, json_body

CB = "http://127.0.0.1:9/callback"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def spec_for(task_type: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(json_body(CB, task_type))
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def task_of(task_type: str, **changes: Any) -> dict[str, Any]:
    spec = validate_task(task_type, spec_for(task_type, **changes))
    return {"task_id": "6b0b1e014fc6fb127e0052a1", "type": spec.type, "params": spec.params}


@pytest.mark.parametrize("task_type", COMMON_TYPES)
def test_each_modern_type_is_created_with_its_params(client: FlaskClient, task_type: str) -> None:
    answer = client.post(f"/v1/task/{task_type}", json=spec_for(task_type), headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == 200, answer.get_json()
    task = answer.get_json()
    assert task["type"] == task_type and task["status"] == "pending"
    assert task["tags"] == [] and task["audits"] == [] and task["customer_review_status"] is None


def test_imageannotation_params_are_kept() -> None:
    params = task_of("imageannotation")["params"]
    assert params["attachment_type"] == "image"
    assert set(params["geometries"]) == {"box", "polygon"}
    assert params["annotation_attributes"]["occluded"]["choices"] == ["yes", "no"]


@pytest.mark.parametrize(
    ("task_type", "changes", "message"),
    [
        ("imageannotation", {"attachment": None}, "Missing required parameter: attachment"),
        ("imageannotation", {"geometries": None}, "Missing required parameter: geometries"),
        ("imageannotation", {"geometries": {}}, "Missing required parameter: geometries"),
        ("imageannotation", {"geometries": {"circle": {"objects_to_annotate": ["x"]}}}, "unknown geometry 'circle'"),
        ("imageannotation", {"geometries": {"box": []}}, "'geometries[box]': must be an object"),
        ("imageannotation", {"geometries": {"box": {}}}, "geometries[box][objects_to_annotate]"),
        ("imageannotation", {"geometries": {"box": {"objects_to_annotate": [""]}}}, "non-empty strings"),
        ("imageannotation", {"geometries": {"box": {"objects_to_annotate": [{"subchoices": ["a"]}]}}}, "'choice'"),
        ("imageannotation", {"annotation_attributes": {"a": {"type": "color"}}}, "type must be one of"),
        (
            "imageannotation",
            {"annotation_attributes": {"a": {"type": "category"}}},
            "annotation_attributes[a][choices]",
        ),
        ("imageannotation", {"attachment_type": "video"}, "'attachment_type'"),
        ("textcollection", {"attachments": None}, "Missing required parameter: attachments"),
        ("textcollection", {"attachments": [{"type": "tweet", "content": "x"}]}, "attachments[0]"),
        ("textcollection", {"attachments": [{"type": "text"}]}, "attachments[0][content]"),
        ("textcollection", {"fields": None}, "Missing required parameter: fields"),
        ("textcollection", {"fields": [{"type": "text", "title": "t"}]}, "fields[0][field_id]"),
        ("textcollection", {"fields": [{"type": "colour", "field_id": "a", "title": "t"}]}, "fields[0]"),
        ("textcollection", {"fields": [{"type": "text", "field_id": "a"}]}, "fields[0][title]"),
        ("textcollection", {"fields": [{"type": "category", "field_id": "a", "title": "t"}]}, "fields[0][choices]"),
        ("textcollection", {"fields": [{"type": "text", "field_id": "a", "title": "t"}] * 2}, "used twice"),
        ("textcollection", {"fields": "ceo"}, "'fields': must be a list"),
        ("namedentityrecognition", {"text": None}, "Missing required parameter: text"),
        ("namedentityrecognition", {"labels": None}, "Missing required parameter: labels"),
        ("namedentityrecognition", {"labels": [{"display_name": "x"}]}, "needs a non-empty 'name'"),
        ("namedentityrecognition", {"labels": ["PER", "PER"]}, "must not repeat a name"),
        ("documenttranscription", {"attachment": None}, "Missing required parameter: attachment"),
        ("documenttranscription", {"features": [{"type": "block"}]}, "features[0][label]"),
        ("videoannotation", {"attachments": None}, "exactly one of attachment or attachments"),
        ("videoannotation", {"attachment": "https://example.com/v.mp4"}, "exactly one of attachment or attachments"),
        ("videoannotation", {"geometries": None}, "Missing required parameter: geometries"),
        ("videoplaybackannotation", {"events_to_annotate": ["a", "a"]}, "must not repeat"),
        ("lidarannotation", {"attachments": None}, "Missing required parameter: attachments"),
        ("lidarannotation", {"labels": None}, "Missing required parameter: labels"),
    ],
)
def test_bad_params_get_specific_errors(task_type: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        validate_task(task_type, spec_for(task_type, **changes))
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tags": "a"}, "'tags': must be a list of non-empty strings"),
        ({"tags": ["a", ""]}, "'tags'"),
        ({"unique_id": 7}, "'unique_id': must be a string"),
        ({"project": ["p"]}, "'project': must be a string"),
    ],
)
def test_bad_top_level_attributes(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        validate_task("imageannotation", spec_for("imageannotation", **changes))
    assert message in raised.value.message


def test_project_batch_unique_id_and_tags_from_a_form(client: FlaskClient) -> None:
    form = [
        ("callback_url", CB),
        ("instruction", "?"),
        ("attachment_type", "text"),
        ("attachment", "car"),
        ("categories", "big"),
        ("categories", "small"),
        ("project", "p"),
        ("batch", "b1"),
        ("unique_id", "u-1"),
        ("tags", "red,blue"),
        ("tags", "green"),
    ]
    task = client.post(
        "/v1/task/categorization", data=urlencode(form), content_type=FORM, headers=basic_auth(API_TEST_KEY)
    )
    assert task.status_code == 200, task.get_json()
    body = task.get_json()
    assert (body["project"], body["batch"], body["unique_id"]) == ("p", "b1", "u-1")
    assert body["tags"] == ["red,blue", "green"]
    single = client.post(
        "/v1/task/categorization",
        data=urlencode([*form[:6], ("tags", "red, blue")]),
        content_type=FORM,
        headers=basic_auth(API_TEST_KEY),
    ).get_json()
    assert single["tags"] == ["red", "blue"]


def test_imageannotation_from_a_form_with_brackets(client: FlaskClient) -> None:
    form = [
        ("callback_url", CB),
        ("attachment", "https://example.com/a.jpg"),
        ("geometries[box][objects_to_annotate]", "car"),
        ("geometries[box][objects_to_annotate]", "bus"),
        ("geometries[point][objects_to_annotate]", "wheel"),
    ]
    task = client.post(
        "/v1/task/imageannotation", data=urlencode(form), content_type=FORM, headers=basic_auth(API_TEST_KEY)
    )
    assert task.status_code == 200, task.get_json()
    assert task.get_json()["params"]["geometries"] == {
        "box": {"objects_to_annotate": ["car", "bus"]},
        "point": {"objects_to_annotate": ["wheel"]},
    }


def test_a_unique_id_is_unique_per_account(client: FlaskClient) -> None:
    first = client.post(
        "/v1/task/imageannotation",
        json=spec_for("imageannotation", unique_id="img-1"),
        headers=basic_auth(API_TEST_KEY),
    )
    again = client.post(
        "/v1/task/imageannotation",
        json=spec_for("imageannotation", unique_id="img-1"),
        headers=basic_auth(API_TEST_KEY),
    )
    assert first.status_code == 200 and again.status_code == 409
    assert "unique_id 'img-1' already exists" in again.get_json()["error"]


# -- generated responses -------------------------------------------------------------------------------


def test_imageannotation_response_shape() -> None:
    task = task_of("imageannotation")
    response = generate_response(task, 0)
    assert set(response) == {"annotations", "global_attributes"}
    kinds = {a["type"] for a in response["annotations"]}
    assert kinds == {"box", "polygon"}
    for annotation in response["annotations"]:
        assert UUID.match(annotation["uuid"]) and set(annotation["attributes"]) == {"occluded"}
        if annotation["type"] == "box":
            assert annotation["label"] in ("car", "adult", "child")
            assert {"left", "top", "width", "height"} <= set(annotation)
        else:
            assert annotation["label"] == "sign" and len(annotation["vertices"]) >= 3
    assert generate_response(task, 0) == response and generate_response(task, 1) != response


@pytest.mark.parametrize("kind", ["line", "point", "cuboid", "ellipse"])
def test_every_geometry_has_its_fields(kind: str) -> None:
    task = task_of("imageannotation", geometries={kind: {"objects_to_annotate": ["thing"]}}, annotation_attributes=None)
    for annotation in generate_response(task, 3)["annotations"]:
        assert annotation["type"] == kind and annotation["attributes"] == {}
        if kind == "point":
            assert {"x", "y"} <= set(annotation)
        else:
            expected = {"line": None, "cuboid": 6, "ellipse": 4}[kind]
            assert expected is None or len(annotation["vertices"]) == expected


def test_textcollection_response_is_keyed_by_field_id() -> None:
    annotations = generate_response(task_of("textcollection"), 0)["annotations"]
    assert set(annotations) == {"ceo", "employees", "sector"}
    assert isinstance(annotations["ceo"], str) and isinstance(annotations["employees"], int)
    assert annotations["sector"][0] in ("tech", "retail")


def test_ner_spans_point_into_the_text() -> None:
    task = task_of("namedentityrecognition")
    response = generate_response(task, 0)
    text = task["params"]["text"]
    for entity in response["annotations"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["label"] in ("PERSON", "ORG", "PLACE")
    ids = {entity["id"] for entity in response["annotations"]}
    for relation in response["relationships"]:
        assert {relation["source_ref"], relation["target_ref"]} <= ids and relation["name"] == "founded"


def test_documenttranscription_response_shape() -> None:
    for annotation in generate_response(task_of("documenttranscription"), 0)["annotations"]:
        assert set(annotation) == {"uuid", "page", "label", "text", "location", "refs"}
        assert annotation["label"] in ("total", "vendor") and annotation["location"]["type"] == "box"


@pytest.mark.parametrize("task_type", ["videoannotation", "videoplaybackannotation", "lidarannotation"])
def test_file_result_types_answer_with_urls(task_type: str) -> None:
    response = generate_response(task_of(task_type), 0)
    assert response["annotations"]["url"].endswith("/6b0b1e014fc6fb127e0052a1/annotations.json")
    assert ("events" in response) == (task_type == "videoplaybackannotation")


# -- the official client -------------------------------------------------------------------------------

CLIENT_MODERN_TYPES = {
    "imageannotation": TaskType.ImageAnnotation,
    "textcollection": TaskType.TextCollection,
    "namedentityrecognition": TaskType.NamedEntityRecognition,
    "documenttranscription": TaskType.DocumentTranscription,
    "videoannotation": TaskType.VideoAnnotation,
    "videoplaybackannotation": TaskType.VideoPlaybackAnnotation,
    "lidarannotation": TaskType.LidarAnnotation,
}


@pytest.mark.parametrize("task_type", COMMON_TYPES)
def test_the_official_client_creates_each_modern_type(start_sim: Callable[..., SimServer], task_type: str) -> None:
    sim = start_sim(completion_delay=0.0)
    client = ScaleClient(API_TEST_KEY, api_instance_url=sim.api_url)
    task = client.create_task(
        CLIENT_MODERN_TYPES[task_type],
        **{**MODERN_BODIES[task_type], "callback_url": CB},
        tags=["e2e"],
        unique_id=f"u-{task_type}",
    )
    assert task.type == task_type and task.as_dict()["tags"] == ["e2e"]
    done = wait_for(lambda: (t := client.get_task(task.id)).status == "completed" and t, what="completion")
    assert done.response == generate_response(client.get_task(task.id).as_dict(), 0)
    with pytest.raises(ScaleDuplicateResource):
        client.create_task(
            CLIENT_MODERN_TYPES[task_type],
            **{**MODERN_BODIES[task_type], "callback_url": CB},
            unique_id=f"u-{task_type}",
        )
    with pytest.raises(ScaleInvalidRequest, match="geometries|attachments|labels|text|attachment"):
        client.create_task(CLIENT_MODERN_TYPES[task_type], callback_url=CB)

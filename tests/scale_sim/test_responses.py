"""Generated responses: the documented shape for each type and its params, reproducible from the seed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scale_sim.responses import IMAGE_SIZES, PHONECALL_OUTCOMES, generate_response
from scale_sim.validation import REFERENCE_TYPES, validate_task
from tests.support.receiver import MIB
from tests.support.tasks import json_body

TASK_ID = "5774cc78b01249ab09f089dd"


def task(task_type: str, **params: Any) -> dict[str, Any]:
    spec = validate_task(task_type, {**json_body("http://x.test/cb", task_type), **params})
    return {"task_id": TASK_ID, "type": spec.type, "params": spec.params}


def test_categorization_picks_one_category() -> None:
    response = generate_response(task("categorization"), seed=1)
    assert set(response) == {"category"}
    assert response["category"] in ("public", "private")


def test_categorization_with_ids_and_multiple() -> None:
    t = task("categorization", category_ids={"123": "public", "124": "private"}, allow_multiple=True)
    response = generate_response(t, seed=1)
    assert isinstance(response["category"], list) and response["category"]
    assert set(response["category"]) <= {"public", "private"}
    ids = {"public": "123", "private": "124"}
    assert response["category_id"] == [ids[c] for c in response["category"]]


def test_categorization_single_with_id() -> None:
    response = generate_response(task("categorization", category_ids={"123": "public", "124": "private"}), seed=3)
    assert response["category_id"] == {"public": "123", "private": "124"}[response["category"]]


@pytest.mark.parametrize("task_type", ["transcription", "datacollection"])
def test_every_requested_field_is_answered(task_type: str) -> None:
    t = task(task_type)
    response = generate_response(t, seed=1)
    assert set(response) == {"fields"}
    assert set(response["fields"]) == set(t["params"]["fields"])
    assert all(isinstance(v, str) and v for v in response["fields"].values())


def test_phonecall_outcome_fields_and_choice() -> None:
    t = task("phonecall")
    response = generate_response(t, seed=1)
    assert response["outcome"] in PHONECALL_OUTCOMES
    assert set(response["fields"]) == {"email"}
    assert response["choice"] in t["params"]["choices"]


def test_phonecall_without_fields_or_choices_has_only_an_outcome() -> None:
    t = task("phonecall")
    t["params"] = {k: v for k, v in t["params"].items() if k not in ("fields", "choices")}
    assert set(generate_response(t, seed=1)) == {"outcome"}


def test_comparison_answers_what_was_asked() -> None:
    assert set(generate_response(task("comparison"), seed=1)) == {"choice"}
    both = task("comparison", fields={"difference": "What differs?"})
    response = generate_response(both, seed=1)
    assert set(response) == {"choice", "fields"} and set(response["fields"]) == {"difference"}


@pytest.mark.parametrize("seed", range(20))
def test_annotation_boxes_fit_an_image_and_carry_labels(seed: int) -> None:
    t = task("annotation")
    boxes = generate_response(t, seed=seed)["annotations"]
    assert 1 <= len(boxes) <= 6
    width = max(w for w, _ in IMAGE_SIZES)
    height = max(h for _, h in IMAGE_SIZES)
    for box in boxes:
        assert set(box) == {"left", "top", "width", "height", "label"}
        assert box["label"] in t["params"]["objects_to_annotate"]
        assert all(isinstance(box[k], int) for k in ("left", "top", "width", "height"))
        assert box["left"] >= 0 and box["top"] >= 0 and box["width"] > 0 and box["height"] > 0
        assert box["left"] + box["width"] <= width and box["top"] + box["height"] <= height


def test_annotation_without_labels() -> None:
    boxes = generate_response(task("annotation", with_labels=False), seed=1)["annotations"]
    assert all("label" not in box for box in boxes)


def test_oversize_annotation_is_over_ten_mib() -> None:
    response = generate_response(task("annotation"), seed=1, oversize=True)
    assert len(json.dumps(response)) > 10 * MIB


def test_audiotranscription_transcript_and_duration() -> None:
    response = generate_response(task("audiotranscription"), seed=1)
    assert set(response) == {"transcript", "duration"}
    assert isinstance(response["transcript"], str) and response["transcript"]
    assert isinstance(response["duration"], float) and response["duration"] > 0


def test_verbatim_transcripts_keep_fillers() -> None:
    response = generate_response(task("audiotranscription", verbatim=True), seed=1)
    assert {"um", "hm", "uh"} & set(response["transcript"].lower().rstrip(".").split())


@pytest.mark.parametrize("task_type", REFERENCE_TYPES)
def test_same_seed_same_response_and_seeds_differ(task_type: str) -> None:
    t = task(task_type, **({"fields": {"a": "A", "b": "B"}} if task_type == "comparison" else {}))
    assert generate_response(t, seed=7) == generate_response(t, seed=7)
    assert any(generate_response(t, seed=s) != generate_response(t, seed=7) for s in range(8, 20))

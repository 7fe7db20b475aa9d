"""Create-parameter checks per task type: the reference's examples pass; bad inputs name the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from scale_sim.exceptions import InvalidRequestError
from scale_sim.forms import parse_form
from scale_sim.validation import REFERENCE_TYPES, TaskSpec, canonical_type, validate_task
from tests.support.tasks import json_body, reference_bodies

CB = "http://www.example.com/callback"


def form(task_type: str, items: list[tuple[str, str]] | None = None, **kwargs: Any) -> TaskSpec:
    return validate_task(task_type, parse_form(items or []), form=True, **kwargs)


def from_json(task_type: str, body: dict[str, Any], **kwargs: Any) -> TaskSpec:
    return validate_task(task_type, body, form=False, **kwargs)


def without(items: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in items if k != name and not k.startswith(name + "[")]


def replaced(items: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [*without(items, name), (name, value)]


# -- the reference's examples ------------------------------------------------------------------------


def test_categorization_curl_example() -> None:
    spec = form("categorize", reference_bodies(CB)["categorization"])
    assert spec.type == "categorization"
    assert spec.instruction == "Is this company public or private?"
    assert spec.urgency == "day"
    assert spec.metadata == {}
    assert spec.params == {
        "attachment_type": "website",
        "attachment": "http://www.google.com/",
        "categories": ["public", "private"],
    }


def test_transcription_curl_example() -> None:
    spec = form("transcription", reference_bodies(CB)["transcription"])
    assert spec.params == {
        "attachment_type": "website",
        "attachment": "http://news.ycombinator.com/",
        "fields": {"title": "Title of Webpage", "top_result": "Title of the top result"},
    }


def test_phonecall_curl_example_keeps_script_at_the_top_level() -> None:
    spec = form("phonecall", reference_bodies(CB)["phonecall"])
    assert spec.params == {
        "phone_number": "5055006865",
        "entity_name": "Alexandr Wang",
        "fields": {"email": "Email Address"},
        "choices": ["He is happy", "He is not happy"],
    }
    assert spec.extra["script"].startswith("Hello {{name}}!")


def test_comparison_curl_example() -> None:
    spec = form("comparison", reference_bodies(CB)["comparison"])
    assert spec.params == {
        "attachment_type": "image",
        "attachments": [
            "http://i.ebayimg.com/00/$T2eC16dHJGwFFZKjy5ZjBRfNyMC4Ig~~_32.JPG",
            "http://images.wisegeek.com/checkered-tablecloth.jpg",
        ],
        "choices": ["yes", "no"],
    }


def test_annotation_curl_example_with_bracketed_examples() -> None:
    spec = form("annotation", reference_bodies(CB)["annotation"])
    assert spec.params == {
        "attachment_type": "image",
        "attachment": "http://i.imgur.com/v4cBreD.jpg",
        "objects_to_annotate": ["baby cow", "big cow"],
        "with_labels": True,
        "examples": [
            {
                "correct": True,
                "image": "http://i.imgur.com/lj6e98s.jpg",
                "explanation": "The boxes are tight and accurate",
            },
            {
                "correct": False,
                "image": "http://i.imgur.com/HIrvIDq.jpg",
                "explanation": "The boxes are neither accurate nor complete",
            },
        ],
    }


def test_datacollection_curl_example() -> None:
    spec = form("datacollection", reference_bodies(CB)["datacollection"])
    assert spec.params == {
        "attachment_type": "website",
        "attachment": "https://www.scaleapi.com/",
        "fields": {"hiring_page": "Hiring Page URL"},
    }


def test_audiotranscription_curl_example_gets_the_default_instruction() -> None:
    spec = form("audiotranscription", reference_bodies(CB)["audiotranscription"])
    assert spec.instruction == "Please transcribe the attached audio file."
    assert spec.params["verbatim"] is False
    assert spec.params["attachment_type"] == "audio"


@pytest.mark.parametrize("task_type", REFERENCE_TYPES)
def test_json_bodies_of_every_type(task_type: str) -> None:
    spec = from_json(task_type, json_body(CB, task_type))
    assert spec.type == task_type
    assert spec.callback_url == CB


def test_optional_defaults_of_annotation_and_audiotranscription() -> None:
    annotation = from_json("annotation", {"callback_url": CB, "attachment": "a.jpg", "objects_to_annotate": ["cat"]})
    assert annotation.params == {
        "attachment_type": "image",
        "attachment": "a.jpg",
        "objects_to_annotate": ["cat"],
        "with_labels": False,
    }
    assert annotation.instruction is None
    audio = from_json("audiotranscription", {"callback_url": CB, "attachment": "a.wav"})
    assert audio.params == {"attachment_type": "audio", "attachment": "a.wav", "verbatim": False}


def test_categorization_options_category_ids_and_allow_multiple() -> None:
    items = [
        *reference_bodies(CB)["categorization"],
        ("category_ids[123]", "public"),
        ("category_ids[124]", "private"),
        ("allow_multiple", "true"),
    ]
    spec = form("categorization", items)
    assert spec.params["category_ids"] == {"123": "public", "124": "private"}
    assert spec.params["allow_multiple"] is True


def test_urgency_metadata_project_and_faults() -> None:
    body = {
        **json_body(CB, "categorization"),
        "urgency": "immediate",
        "metadata": {"video": "v1", "sim_faults": ["duplicate=2", "wrong_key"]},
        "project": "p1",
        "batch": "b1",
    }
    spec = from_json("categorization", body)
    assert spec.urgency == "immediate"
    assert spec.metadata == {"video": "v1", "sim_faults": ["duplicate=2", "wrong_key"]}
    assert spec.faults == {"duplicate": 2, "wrong_key": True}
    assert spec.extra == {"project": "p1", "batch": "b1"}


def test_form_metadata_by_brackets_or_json_text() -> None:
    base = reference_bodies(CB)["categorization"]
    bracketed = form("categorization", [*base, ("metadata[sim_faults][0]", "drop"), ("metadata[k]", "v")])
    assert bracketed.metadata == {"sim_faults": ["drop"], "k": "v"}
    assert bracketed.faults == {"drop": True}
    as_text = form("categorization", [*base, ("metadata", '{"sim_faults": "reorder"}')])
    assert as_text.faults == {"reorder": True}


def test_form_booleans_and_single_list_values() -> None:
    items = [
        ("callback_url", CB),
        ("attachment", "a.jpg"),
        ("objects_to_annotate", "cat"),
        ("with_labels", "FALSE"),
    ]
    spec = form("annotation", items)
    assert spec.params["objects_to_annotate"] == ["cat"]
    assert spec.params["with_labels"] is False


def test_default_callback_url_fills_in() -> None:
    body = json_body(CB, "categorization")
    del body["callback_url"]
    spec = from_json("categorization", body, default_callback_url="http://127.0.0.1:9/cb")
    assert spec.callback_url == "http://127.0.0.1:9/cb"


def test_canonical_type() -> None:
    assert canonical_type("categorize") == "categorization"
    assert canonical_type("annotation") == "annotation"
    assert canonical_type("imageannotation") == "imageannotation"
    assert canonical_type("chatlite") is None


# -- bad inputs ----------------------------------------------------------------------------------------

REQUIRED = [
    ("categorization", "callback_url"),
    ("categorization", "instruction"),
    ("categorization", "attachment_type"),
    ("categorization", "attachment"),
    ("categorization", "categories"),
    ("transcription", "callback_url"),
    ("transcription", "instruction"),
    ("transcription", "attachment_type"),
    ("transcription", "attachment"),
    ("transcription", "fields"),
    ("phonecall", "instruction"),
    ("phonecall", "phone_number"),
    ("phonecall", "entity_name"),
    ("phonecall", "script"),
    ("comparison", "instruction"),
    ("comparison", "attachment_type"),
    ("comparison", "attachments"),
    ("annotation", "attachment"),
    ("annotation", "objects_to_annotate"),
    ("datacollection", "instruction"),
    ("datacollection", "attachment_type"),
    ("datacollection", "attachment"),
    ("datacollection", "fields"),
    ("audiotranscription", "attachment"),
    ("audiotranscription", "callback_url"),
]


@pytest.mark.parametrize(("task_type", "name"), REQUIRED)
def test_each_required_parameter_is_named_when_missing_from_a_form(task_type: str, name: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"Missing required parameter: {name}"):
        form(task_type, without(reference_bodies(CB)[task_type], name))


@pytest.mark.parametrize(("task_type", "name"), REQUIRED)
def test_each_required_parameter_is_named_when_missing_from_json(task_type: str, name: str) -> None:
    body = json_body(CB, task_type)
    body.pop(name, None)
    with pytest.raises(InvalidRequestError, match=f"Missing required parameter: {name}"):
        from_json(task_type, body)


@pytest.mark.parametrize(
    ("task_type", "name", "value"),
    [
        ("categorization", "urgency", "tomorrow"),
        ("categorization", "attachment_type", "hologram"),
        ("transcription", "attachment_type", "smell"),
        ("comparison", "attachment_type", "IMAGE"),
        ("datacollection", "attachment_type", "pdf"),
        ("annotation", "attachment_type", "video"),
        ("audiotranscription", "attachment_type", "text"),
        ("phonecall", "attachment_type", "fax"),
        ("annotation", "urgency", ""),
    ],
)
def test_bad_enum_values_are_named(task_type: str, name: str, value: str) -> None:
    items = replaced(reference_bodies(CB)[task_type], name, value)
    if task_type == "phonecall":
        items.append(("attachment", "http://x/y.png"))
    if value == "":
        spec = form(task_type, items)  # empty means not given: the default applies
        assert spec.urgency == "day"
        return
    with pytest.raises(InvalidRequestError, match=f"Invalid parameter '{name}'"):
        form(task_type, items)


@pytest.mark.parametrize(
    ("task_type", "name", "value"),
    [
        ("categorization", "allow_multiple", "yes"),
        ("annotation", "with_labels", "1"),
        ("audiotranscription", "verbatim", "maybe"),
    ],
)
def test_bad_form_booleans_are_named(task_type: str, name: str, value: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"Invalid parameter '{name}': must be a boolean"):
        form(task_type, replaced(reference_bodies(CB)[task_type], name, value))


@pytest.mark.parametrize(
    ("task_type", "name", "value"),
    [
        ("categorization", "allow_multiple", 1),
        ("annotation", "with_labels", "yes"),
        ("audiotranscription", "verbatim", []),
    ],
)
def test_bad_json_booleans_are_named(task_type: str, name: str, value: object) -> None:
    with pytest.raises(InvalidRequestError, match=f"Invalid parameter '{name}': must be a boolean"):
        from_json(task_type, {**json_body(CB, task_type), name: value})


def test_comparison_needs_fields_or_choices() -> None:
    with pytest.raises(InvalidRequestError, match="one of fields or choices"):
        form("comparison", without(reference_bodies(CB)["comparison"], "choices"))


def test_annotation_allows_at_most_six_objects() -> None:
    body = {**json_body(CB, "annotation"), "objects_to_annotate": [f"o{i}" for i in range(7)]}
    with pytest.raises(InvalidRequestError, match="objects_to_annotate.*at most 6"):
        from_json("annotation", body)
    body["objects_to_annotate"] = body["objects_to_annotate"][:6]
    assert len(from_json("annotation", body).params["objects_to_annotate"]) == 6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"categories": "public"}, "'categories': must be a list"),
        ({"categories": ["public", ""]}, "'categories': must be a list of non-empty strings"),
        ({"categories": ["a", "a"]}, "'categories': must not repeat"),
        ({"categories": [1, 2]}, "'categories'"),
        ({"instruction": 5}, "'instruction': must be a string"),
        ({"category_ids": {"1": "neither"}}, "'category_ids'"),
        ({"category_ids": {"1": "public", "2": "public"}}, "'category_ids': gives one category two ids"),
        ({"category_ids": ["public"]}, "'category_ids': must be an object"),
        ({"metadata": ["not", "an", "object"]}, "'metadata': must be an object"),
        ({"metadata": {"sim_faults": ["explode"]}}, "'metadata.sim_faults': unknown fault"),
        ({"metadata": {"sim_faults": ["oversize"]}}, "oversize applies to annotation tasks only"),
        ({"callback_url": "ftp://example.com/cb"}, "'callback_url'"),
        ({"callback_url": "/relative/callback"}, "'callback_url'"),
        ({"project": ["p"]}, "'project': must be a string"),
    ],
)
def test_bad_json_values_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        from_json("categorization", {**json_body(CB, "categorization"), **change})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": {"title": 5}}, "'fields': must map non-empty keys to strings"),
        ({"fields": "title"}, "'fields': must be an object"),
        ({"fields": {}}, "Missing required parameter: fields"),
    ],
)
def test_bad_fields_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        from_json("transcription", {**json_body(CB, "transcription"), **change})


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ([{"image": "a.jpg"}], r"examples\[0\]\[correct\]"),
        ([{"correct": True}], r"examples\[0\]\[image\]"),
        ([{"correct": "sure", "image": "a.jpg"}], r"examples\[0\]\[correct\]"),
        ([{"correct": True, "image": "a.jpg", "explanation": 3}], r"examples\[0\]\[explanation\]"),
        (["a.jpg"], r"examples\[0\]"),
        ({"correct": True}, "'examples': must be a list"),
    ],
)
def test_bad_annotation_examples_are_named(examples: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        from_json("annotation", {**json_body(CB, "annotation"), "examples": examples})


def test_bad_bracketed_examples_index_is_refused() -> None:
    items = [*without(reference_bodies(CB)["annotation"], "examples"), ("examples[first][correct]", "true")]
    with pytest.raises(InvalidRequestError, match="'examples': must be a list"):
        form("annotation", items)


def test_phonecall_attachment_needs_its_type() -> None:
    with pytest.raises(InvalidRequestError, match="Missing required parameter: attachment_type"):
        form("phonecall", [*reference_bodies(CB)["phonecall"], ("attachment", "http://x/y.png")])


def test_unsupported_task_type() -> None:
    with pytest.raises(InvalidRequestError, match="not supported"):
        from_json("chatlite", json_body(CB, "annotation"))


def test_form_metadata_that_is_not_json() -> None:
    with pytest.raises(InvalidRequestError, match="'metadata': must be an object"):
        form("categorization", [*reference_bodies(CB)["categorization"], ("metadata", "{oops")])

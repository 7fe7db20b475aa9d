"""Create-task parameter checking, one function per documented task type.

Each checker reads the request body (JSON, or form items nested by :mod:`scale_sim.forms`),
raises :class:`InvalidRequestError` naming the first bad parameter, applies the documented
defaults, and splits the parameters the way the reference's returned task objects show them:
what goes into ``params`` and what stays at the top level of the task.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from callback_server.schemas import COMMON_TYPES, FILE_RESULT_TYPES, REFERENCE_TYPES
from scale_sim import defaults
from scale_sim.config import is_http_url
from scale_sim.exceptions import FaultSpecError, InvalidRequestError
from scale_sim.faults import FaultValues, parse_fault_list

SIM_FILE_RESULT_TYPES = tuple(t for t in COMMON_TYPES if t in FILE_RESULT_TYPES)
"""The file-result types the simulator serves (video and lidar): the response holds `annotations: {url}`
(and `events` for playback)."""

FRAME_TYPES = ("videoannotation", "videoplaybackannotation", "lidarannotation")
"""Types whose error at creation lists `frames` instead of `attachments` (video and lidar)."""

TYPE_ALIASES = {"categorize": "categorization"}
"""The 2016 endpoint name for categorization; tasks created there still have type categorization."""

URGENCIES = ("immediate", "day", "week")
"""Documented urgency values."""

ATTACHMENT_TYPES = ("text", "image", "video", "audio", "website", "pdf")
"""The general attachment types (categorization, comparison, phonecall; transcription's example uses
website although its table says image or pdf, so it gets the general list too)."""

DATACOLLECTION_ATTACHMENT_TYPES = ("text", "image", "website")
"""Attachment types the datacollection table allows."""

_TRUE = "true"
_FALSE = "false"


GEOMETRIES = ("box", "polygon", "line", "point", "cuboid", "ellipse")
"""imageannotation's (and video's) geometry kinds in `geometries`."""

ATTRIBUTE_TYPES = ("category", "number", "text", "angle", "linked")
"""Types of an `annotation_attributes` entry."""

TEXT_FIELD_TYPES = ("text", "number", "category", "datetime", "boolean")
"""Types of a textcollection field."""

TEXT_ATTACHMENT_TYPES = ("text", "image", "website", "pdf", "video", "audio")
"""Types of a textcollection attachment object."""


def canonical_type(name: str) -> str | None:
    """The task type an endpoint name creates, or None when the simulator does not serve it."""
    name = TYPE_ALIASES.get(name, name)
    return name if name in SIM_TYPES else None


@dataclass(frozen=True)
class TaskSpec:
    """A checked create request: the task's top-level attributes and its params."""

    type: str
    callback_url: str
    urgency: str
    params: dict[str, Any]
    metadata: dict[str, Any]
    instruction: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Other top-level attributes: phonecall's script, project, batch, unique_id, tags."""
    faults: FaultValues = field(default_factory=dict)
    """The task's own `metadata.sim_faults`, parsed."""


def _missing(name: str) -> InvalidRequestError:
    return InvalidRequestError(f"Missing required parameter: {name}")


def _invalid(name: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid parameter {name!r}: {why}")


def _indexed_list(value: dict[str, Any], name: str) -> list[Any]:
    """A form's ``x[0]=.. x[1]=..`` object as a list in index order."""
    if not all(key.isdigit() for key in value):
        raise _invalid(name, "must be a list")
    return [value[key] for key in sorted(value, key=int)]


class _Reader:
    """Reads typed parameters out of one request body, naming the parameter in every error."""

    def __init__(self, data: Mapping[str, Any], *, form: bool, prefix: str = "") -> None:
        self.data = data
        self.form = form
        self.prefix = prefix

    def label(self, name: str) -> str:
        """How errors name a parameter: `fields`, or `examples[0][image]` inside a nested object."""
        return f"{self.prefix}[{name}]" if self.prefix else name

    def string(self, name: str, *, required: bool) -> str | None:
        """A string parameter; absent, null and "" all count as not given."""
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise _missing(self.label(name))
            return None
        if not isinstance(value, str):
            raise _invalid(self.label(name), "must be a string")
        return value

    def choice(self, name: str, options: Sequence[str], *, required: bool, default: str | None = None) -> str | None:
        """One of `options`; the default when not given."""
        value = self.string(name, required=required and default is None)
        if value is None:
            return default
        if value not in options:
            raise _invalid(self.label(name), f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def boolean(self, name: str) -> bool | None:
        """A boolean: JSON true/false, or the strings "true"/"false" in any case (forms send strings)."""
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (_TRUE, _FALSE):
            return value.lower() == _TRUE
        raise _invalid(self.label(name), "must be a boolean (true or false)")

    def string_list(self, name: str, *, required: bool, unique: bool = False) -> list[str] | None:
        """A list of non-empty strings; a form may send one value, repeated keys, or x[0]=.. keys."""
        value = self.data.get(name)
        if value is None or value == "" or value == []:
            if required:
                raise _missing(name)
            return None
        if self.form and isinstance(value, str):
            value = [value]
        elif self.form and isinstance(value, dict):
            value = _indexed_list(value, name)
        if not isinstance(value, list):
            raise _invalid(name, "must be a list of strings")
        for item in value:
            if not isinstance(item, str) or not item:
                raise _invalid(name, "must be a list of non-empty strings")
        if unique and len(set(value)) != len(value):
            raise _invalid(name, "must not repeat a value")
        return value

    def object(self, name: str) -> dict[str, Any] | None:
        """A JSON object (in a form: bracketed keys, or the object as JSON text)."""
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if self.form and isinstance(value, str):
            # A form may carry an object as JSON text: `-d metadata='{"k": "v"}'`.
            try:
                value = json.loads(value)
            except ValueError:
                raise _invalid(name, "must be an object (use name[key]=value or JSON text)") from None
        if not isinstance(value, dict):
            raise _invalid(name, "must be an object")
        return value

    def string_map(self, name: str, *, required: bool) -> dict[str, str] | None:
        """An object of strings, like `fields`; an empty one counts as not given."""
        value = self.object(name)
        if not value:
            if required:
                raise _missing(name)
            return None
        for key, item in value.items():
            if not key or not isinstance(item, str):
                raise _invalid(name, "must map non-empty keys to strings")
        return value

    def examples(self, name: str) -> list[dict[str, Any]] | None:
        """Annotation examples: each needs `correct` and `image`; `explanation` is optional."""
        value = self.data.get(name)
        if value is None or value == [] or value == "":
            return None
        if self.form and isinstance(value, dict):
            value = _indexed_list(value, name)
        if not isinstance(value, list):
            raise _invalid(name, "must be a list of objects")
        examples = []
        for index, item in enumerate(value):
            where = f"{name}[{index}]"
            if not isinstance(item, dict):
                raise _invalid(where, "must be an object")
            sub = _Reader(item, form=self.form, prefix=where)
            correct = sub.boolean("correct")
            if correct is None:
                raise _missing(sub.label("correct"))
            example: dict[str, Any] = {"correct": correct, "image": sub.string("image", required=True)}
            explanation = sub.string("explanation", required=False)
            if explanation is not None:
                example["explanation"] = explanation
            examples.append(example)
        return examples


def _attachment_pair(read: _Reader, params: dict[str, Any]) -> None:
    """phonecall's optional attachment: both attachment_type and attachment, or neither."""
    attachment_type = read.choice("attachment_type", ATTACHMENT_TYPES, required=False)
    attachment = read.string("attachment", required=False)
    if (attachment_type is None) != (attachment is None):
        raise _missing("attachment" if attachment is None else "attachment_type")
    if attachment_type is not None:
        params["attachment_type"] = attachment_type
        params["attachment"] = attachment


def _categorization(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    top["instruction"] = read.string("instruction", required=True)
    params: dict[str, Any] = {
        "attachment_type": read.choice("attachment_type", ATTACHMENT_TYPES, required=True),
        "attachment": read.string("attachment", required=True),
        "categories": read.string_list("categories", required=True, unique=True),
    }
    category_ids = read.string_map("category_ids", required=False)
    if category_ids is not None:
        unknown = [value for value in category_ids.values() if value not in params["categories"]]
        if unknown:
            raise _invalid("category_ids", f"maps to {unknown[0]!r}, which is not one of the categories")
        if len(set(category_ids.values())) != len(category_ids):
            raise _invalid("category_ids", "gives one category two ids")
        params["category_ids"] = category_ids
    allow_multiple = read.boolean("allow_multiple")
    if allow_multiple is not None:
        params["allow_multiple"] = allow_multiple
    return params


def _fields_task(read: _Reader, top: dict[str, Any], attachment_types: tuple[str, ...]) -> dict[str, Any]:
    """transcription and datacollection: the same parameters, different attachment types."""
    top["instruction"] = read.string("instruction", required=True)
    return {
        "attachment_type": read.choice("attachment_type", attachment_types, required=True),
        "attachment": read.string("attachment", required=True),
        "fields": read.string_map("fields", required=True),
    }


def _phonecall(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    top["instruction"] = read.string("instruction", required=True)
    params: dict[str, Any] = {
        "phone_number": read.string("phone_number", required=True),
        "entity_name": read.string("entity_name", required=True),
    }
    # The reference's returned object keeps script at the top level, beside instruction.
    top["script"] = read.string("script", required=True)
    _attachment_pair(read, params)
    fields = read.string_map("fields", required=False)
    if fields is not None:
        params["fields"] = fields
    choices = read.string_list("choices", required=False, unique=True)
    if choices is not None:
        params["choices"] = choices
    return params


def _comparison(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    top["instruction"] = read.string("instruction", required=True)
    params: dict[str, Any] = {
        "attachment_type": read.choice("attachment_type", ATTACHMENT_TYPES, required=True),
        "attachments": read.string_list("attachments", required=True),
    }
    choices = read.string_list("choices", required=False, unique=True)
    fields = read.string_map("fields", required=False)
    if choices is None and fields is None:
        raise InvalidRequestError("Missing required parameter: one of fields or choices")
    if choices is not None:
        params["choices"] = choices
    if fields is not None:
        params["fields"] = fields
    return params


def _annotation(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    instruction = read.string("instruction", required=False)
    if instruction is not None:
        top["instruction"] = instruction
    objects = read.string_list("objects_to_annotate", required=True, unique=True)
    assert objects is not None
    if len(objects) > defaults.MAX_OBJECTS_TO_ANNOTATE:
        raise _invalid("objects_to_annotate", f"may hold at most {defaults.MAX_OBJECTS_TO_ANNOTATE} objects")
    params: dict[str, Any] = {
        "attachment_type": read.choice("attachment_type", ("image",), required=False, default="image"),
        "attachment": read.string("attachment", required=True),
        "objects_to_annotate": objects,
        "with_labels": bool(read.boolean("with_labels")),
    }
    examples = read.examples("examples")
    if examples is not None:
        params["examples"] = examples
    return params


def _audiotranscription(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    top["instruction"] = read.string("instruction", required=False) or defaults.AUDIO_INSTRUCTION
    return {
        "attachment_type": read.choice("attachment_type", ("audio",), required=False, default="audio"),
        "attachment": read.string("attachment", required=True),
        "verbatim": bool(read.boolean("verbatim")),
    }


def _list_of(value: Any, name: str, *, form: bool) -> list[Any] | None:
    """A list parameter in JSON, or in a form (one value, repeated keys, or x[0]=.. keys); None if absent."""
    if value is None or value == "" or value == []:
        return None
    if form and isinstance(value, str | dict) and not (isinstance(value, dict) and not value):
        value = _indexed_list(value, name) if isinstance(value, dict) else [value]
    if not isinstance(value, list):
        raise _invalid(name, "must be a list")
    return value


def _labels(value: Any, name: str, *, form: bool) -> list[Any]:
    """objects_to_annotate / labels: non-empty strings, or LabelDescription objects ``{"choice", "subchoices"?}``."""
    labels = _list_of(value, name, form=form)
    if not labels:
        raise _missing(name)
    for index, label in enumerate(labels):
        if isinstance(label, str) and label:
            continue
        if isinstance(label, dict) and isinstance(label.get("choice"), str) and label["choice"]:
            subchoices = label.get("subchoices")
            if subchoices is not None:
                _labels(subchoices, f"{name}[{index}][subchoices]", form=form)
            continue
        raise _invalid(name, "must hold non-empty strings or objects with a non-empty 'choice'")
    return labels


def _geometries(read: _Reader) -> dict[str, Any]:
    """`geometries`: at least one of box, polygon, line, point, cuboid, ellipse, each with objects_to_annotate."""
    geometries = read.object("geometries")
    if not geometries:
        raise _missing("geometries")
    checked: dict[str, Any] = {}
    for kind, spec in geometries.items():
        if kind not in GEOMETRIES:
            raise _invalid("geometries", f"unknown geometry {kind!r} (known: {', '.join(GEOMETRIES)})")
        if not isinstance(spec, dict):
            raise _invalid(f"geometries[{kind}]", "must be an object")
        where = f"geometries[{kind}][objects_to_annotate]"
        checked[kind] = {**spec, "objects_to_annotate": _labels(spec.get("objects_to_annotate"), where, form=read.form)}
    return checked


def _annotation_attributes(read: _Reader) -> dict[str, Any] | None:
    """Optional `annotation_attributes`: each an object with a known `type`; a category needs `choices`."""
    attributes = read.object("annotation_attributes")
    if not attributes:
        return None
    for key, spec in attributes.items():
        where = f"annotation_attributes[{key}]"
        if not isinstance(spec, dict):
            raise _invalid(where, "must be an object")
        kind = spec.get("type", "category")
        if kind not in ATTRIBUTE_TYPES:
            raise _invalid(where, f"type must be one of {', '.join(ATTRIBUTE_TYPES)}, got {kind!r}")
        if kind == "category":
            choices = _list_of(spec.get("choices"), f"{where}[choices]", form=read.form)
            if not choices:
                raise _missing(f"{where}[choices]")
    return attributes


def _optional_instruction(read: _Reader, top: dict[str, Any]) -> None:
    instruction = read.string("instruction", required=False)
    if instruction is not None:
        top["instruction"] = instruction


def _imageannotation(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    _optional_instruction(read, top)
    params: dict[str, Any] = {
        "attachment_type": read.choice("attachment_type", ("image",), required=False, default="image"),
        "attachment": read.string("attachment", required=True),
        "geometries": _geometries(read),
    }
    attributes = _annotation_attributes(read)
    if attributes is not None:
        params["annotation_attributes"] = attributes
    return params


def _object_list(read: _Reader, name: str, *, required: bool) -> list[dict[str, Any]] | None:
    """A list of JSON objects (a form gives them as x[0][key]=.. or as JSON text)."""
    value = read.data.get(name)
    if read.form and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _invalid(name, "must be a list of objects (JSON text in a form)") from None
    items = _list_of(value, name, form=read.form)
    if not items:
        if required:
            raise _missing(name)
        return None
    if not all(isinstance(item, dict) for item in items):
        raise _invalid(name, "must be a list of objects")
    return items


def _textcollection(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    _optional_instruction(read, top)
    attachments = _object_list(read, "attachments", required=True)
    assert attachments is not None
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        if attachment.get("type") not in TEXT_ATTACHMENT_TYPES:
            raise _invalid(where, f"type must be one of {', '.join(TEXT_ATTACHMENT_TYPES)}")
        if not isinstance(attachment.get("content"), str) or not attachment["content"]:
            raise _missing(f"{where}[content]")
    fields = _object_list(read, "fields", required=True)
    assert fields is not None
    seen: set[str] = set()
    for index, spec in enumerate(fields):
        where = f"fields[{index}]"
        field_id = spec.get("field_id")
        if not isinstance(field_id, str) or not field_id:
            raise _missing(f"{where}[field_id]")
        if field_id in seen:
            raise _invalid("fields", f"field_id {field_id!r} is used twice")
        seen.add(field_id)
        if spec.get("type") not in TEXT_FIELD_TYPES:
            raise _invalid(where, f"type must be one of {', '.join(TEXT_FIELD_TYPES)}")
        if not isinstance(spec.get("title"), str) or not spec["title"]:
            raise _missing(f"{where}[title]")
        if spec["type"] == "category" and not _list_of(spec.get("choices"), f"{where}[choices]", form=read.form):
            raise _missing(f"{where}[choices]")
    return {"attachments": attachments, "fields": fields}


def _named_labels(read: _Reader, name: str, *, required: bool) -> list[dict[str, Any]] | None:
    """NER `labels`/`relationships`: objects with a non-empty `name` (a plain string means ``{"name": it}``)."""
    items = _list_of(read.data.get(name), name, form=read.form)
    if not items:
        if required:
            raise _missing(name)
        return None
    named = []
    for index, item in enumerate(items):
        if isinstance(item, str) and item:
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise _invalid(name, f"item {index} needs a non-empty 'name'")
        named.append(item)
    if len({item["name"] for item in named}) != len(named):
        raise _invalid(name, "must not repeat a name")
    return named


def _namedentityrecognition(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    _optional_instruction(read, top)
    params: dict[str, Any] = {
        "text": read.string("text", required=True),
        "labels": _named_labels(read, "labels", required=True),
    }
    relationships = _named_labels(read, "relationships", required=False)
    if relationships is not None:
        params["relationships"] = relationships
    return params


def _documenttranscription(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    _optional_instruction(read, top)
    params: dict[str, Any] = {
        "attachment_type": read.choice("attachment_type", ("pdf", "image"), required=False, default="pdf"),
        "attachment": read.string("attachment", required=True),
    }
    features = _object_list(read, "features", required=False)
    if features is not None:
        for index, feature in enumerate(features):
            if not isinstance(feature.get("label"), str) or not feature["label"]:
                raise _missing(f"features[{index}][label]")
        params["features"] = features
    return params


def _frames(read: _Reader, *, video: bool) -> dict[str, Any]:
    """A video (`attachment`) or its frames (`attachments`, a list of URLs): exactly one of them."""
    attachment = read.string("attachment", required=False)
    attachments = read.string_list("attachments", required=False)
    if (attachment is None) == (attachments is None):
        raise InvalidRequestError("Missing required parameter: exactly one of attachment or attachments")
    if attachment is not None:
        return {"attachment_type": "video" if video else "json", "attachment": attachment}
    return {"attachment_type": "image" if video else "json", "attachments": attachments}


def _videoannotation(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    _optional_instruction(read, top)
    params = {**_frames(read, video=True), "geometries": _geometries(read)}
    attributes = _annotation_attributes(read)
    if attributes is not None:
        params["annotation_attributes"] = attributes
    return params


def _videoplaybackannotation(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    params = _videoannotation(read, top)
    events = read.string_list("events_to_annotate", required=False, unique=True)
    if events is not None:
        params["events_to_annotate"] = events
    return params


def _lidarannotation(read: _Reader, top: dict[str, Any]) -> dict[str, Any]:
    _optional_instruction(read, top)
    attachments = read.string_list("attachments", required=True)
    params: dict[str, Any] = {
        "attachment_type": read.choice("attachment_type", ("json",), required=False, default="json"),
        "attachments": attachments,
        "labels": _labels(read.data.get("labels"), "labels", form=read.form),
    }
    return params


_CHECKERS: dict[str, Callable[[_Reader, dict[str, Any]], dict[str, Any]]] = {
    "categorization": _categorization,
    "transcription": functools.partial(_fields_task, attachment_types=ATTACHMENT_TYPES),
    "phonecall": _phonecall,
    "comparison": _comparison,
    "annotation": _annotation,
    "datacollection": functools.partial(_fields_task, attachment_types=DATACOLLECTION_ATTACHMENT_TYPES),
    "audiotranscription": _audiotranscription,
    "imageannotation": _imageannotation,
    "textcollection": _textcollection,
    "namedentityrecognition": _namedentityrecognition,
    "documenttranscription": _documenttranscription,
    "videoannotation": _videoannotation,
    "videoplaybackannotation": _videoplaybackannotation,
    "lidarannotation": _lidarannotation,
}

SIM_TYPES = REFERENCE_TYPES + COMMON_TYPES
"""Every type `POST /v1/task/{type}` creates."""


def _metadata_and_faults(read: _Reader) -> tuple[dict[str, Any], FaultValues]:
    metadata = read.object("metadata") or {}
    raw_faults = metadata.get("sim_faults")
    if raw_faults is None:
        return metadata, {}
    if read.form and isinstance(raw_faults, dict):
        raw_faults = metadata["sim_faults"] = _indexed_list(raw_faults, "metadata[sim_faults]")
    try:
        return metadata, parse_fault_list(raw_faults)
    except FaultSpecError as exc:
        raise _invalid("metadata.sim_faults", str(exc)) from None


def _tags(read: _Reader) -> list[str] | None:
    """`tags`: a list of non-empty strings (a form may repeat the key or give one comma-separated value)."""
    value = read.data.get("tags")
    if value is None or value == "" or value == []:
        return None
    if read.form and isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    elif read.form and isinstance(value, dict):
        value = _indexed_list(value, "tags")
    if not isinstance(value, list) or not all(isinstance(tag, str) and tag for tag in value):
        raise _invalid("tags", "must be a list of non-empty strings")
    return list(dict.fromkeys(value))


def validate_task(
    task_type: str,
    data: Mapping[str, Any],
    *,
    form: bool = False,
    default_callback_url: str | None = None,
) -> TaskSpec:
    """Check a create request for `task_type`; raise InvalidRequestError naming the first bad parameter."""
    kind = canonical_type(task_type)
    if kind is None:
        raise InvalidRequestError(
            f"Task type {task_type!r} is not supported by the simulator (supported: {', '.join(SIM_TYPES)})"
        )
    read = _Reader(data, form=form)
    callback_url = read.string("callback_url", required=default_callback_url is None) or default_callback_url
    assert callback_url is not None
    if not is_http_url(callback_url):
        raise _invalid("callback_url", "must be a full http:// or https:// URL")
    urgency = read.choice("urgency", URGENCIES, required=False, default="day")
    assert urgency is not None
    top: dict[str, Any] = {}
    params = _CHECKERS[kind](read, top)
    metadata, faults = _metadata_and_faults(read)
    if faults.get("oversize") and kind != "annotation":
        raise _invalid("metadata.sim_faults", "oversize applies to annotation tasks only")
    for name in ("project", "batch", "unique_id"):
        value = read.string(name, required=False)
        if value is not None:
            top[name] = value
    tags = _tags(read)
    if tags is not None:
        top["tags"] = tags
    instruction = top.pop("instruction", None)
    return TaskSpec(
        type=kind,
        callback_url=callback_url,
        urgency=urgency,
        params=params,
        metadata=metadata,
        instruction=instruction,
        extra=top,
        faults=faults,
    )

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

from callback_server.schemas import TASK_TYPES
from scale_sim import defaults
from scale_sim.config import is_http_url
from scale_sim.exceptions import FaultSpecError, InvalidRequestError
from scale_sim.faults import FaultValues, parse_fault_list

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


def canonical_type(name: str) -> str | None:
    """The task type an endpoint name creates, or None when the simulator does not serve it."""
    name = TYPE_ALIASES.get(name, name)
    return name if name in TASK_TYPES else None


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
    """Other top-level attributes: phonecall's script (as in the reference's example), project, batch."""
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

    def choice(
        self, name: str, options: Sequence[str], *, required: bool, default: str | None = None
    ) -> str | None:
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


_CHECKERS: dict[str, Callable[[_Reader, dict[str, Any]], dict[str, Any]]] = {
    "categorization": _categorization,
    "transcription": functools.partial(_fields_task, attachment_types=ATTACHMENT_TYPES),
    "phonecall": _phonecall,
    "comparison": _comparison,
    "annotation": _annotation,
    "datacollection": functools.partial(_fields_task, attachment_types=DATACOLLECTION_ATTACHMENT_TYPES),
    "audiotranscription": _audiotranscription,
}


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
            f"Task type {task_type!r} is not supported by the simulator (supported: {', '.join(TASK_TYPES)})"
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
    for name in ("project", "batch"):
        value = read.string(name, required=False)
        if value is not None:
            top[name] = value
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

"""marshmallow schemas of a Scale callback: the envelope, the task object, each type's response.

Schemas only *check*: the job carries the body as Scale sent it, unknown fields and all, so
a field Scale adds tomorrow reaches the handlers instead of being stripped here.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from callback_server.exceptions import InvalidCallbackError

MAX_COORDINATE = 2**31
"""Bounding-box numbers beyond this are no pixel position; they are garbage or an attack."""

TASK_TYPES = (
    "categorization",
    "transcription",
    "phonecall",
    "comparison",
    "annotation",
    "datacollection",
    "audiotranscription",
)
"""The task types whose responses this receiver knows; any other type goes to the fallback."""


class StrictString(fields.String):
    """A string, and only a string (no numbers coerced), optionally non-empty."""

    def __init__(self, *, non_empty: bool = False, **kwargs: Any) -> None:
        if non_empty:
            kwargs.setdefault("validate", validate.Length(min=1))
        super().__init__(**kwargs)


class StrictBoolean(fields.Field):
    """A JSON boolean; marshmallow's own Boolean would also take "yes" and 1."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Not a boolean.")
        return value


class JsonNumber(fields.Field):
    """A finite JSON number (not a bool, not a numeric string), optionally bounded."""

    def __init__(self, *, minimum: float | None = None, maximum: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("Not a number.")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError("Not a finite number.")
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"Must be at least {self.minimum}.")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(f"Must be at most {self.maximum}.")
        return value


class StringOrList(fields.Field):
    """A string, or a list of strings (categorization answers with either)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | list[str]:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise ValidationError("Not a string or a list of strings.")


class Timestamp(fields.Field):
    """An ISO-8601 timestamp, kept as the string Scale sent."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError("Not an ISO-8601 timestamp string.")
        try:
            parse_timestamp(value)
        except ValueError:
            raise ValidationError("Not an ISO-8601 timestamp.") from None
        return value


def parse_timestamp(value: str) -> datetime:
    """Parse Scale's timestamps ("2016-06-23T09:10:02.798Z"), which older Pythons reject for the Z."""
    return datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)


class _Open(Schema):
    """Unknown fields are kept: Scale adds fields over time and they must reach the handlers."""

    class Meta:
        unknown = INCLUDE


class TaskSchema(_Open):
    """The task object Scale embeds in every callback."""

    task_id = StrictString(required=True, non_empty=True, validate=validate.Length(min=1, max=200))
    type = StrictString(required=True, validate=validate.Length(min=1, max=100))
    status = StrictString(allow_none=True)
    created_at = Timestamp(allow_none=True)
    completed_at = Timestamp(allow_none=True)
    callback_url = StrictString(allow_none=True)
    instruction = StrictString(allow_none=True)
    urgency = StrictString(allow_none=True)
    params = fields.Dict(allow_none=True)
    response = fields.Dict(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    is_test = StrictBoolean(allow_none=True)
    callback_succeeded = StrictBoolean(allow_none=True)


class EnvelopeSchema(_Open):
    """The body of a callback: ``{"task_id", "response", "task"}``."""

    task_id = StrictString(required=True, validate=validate.Length(min=1, max=200))
    response = fields.Dict(required=True)
    task = fields.Nested(TaskSchema, required=True)

    @validates_schema(skip_on_field_errors=True)
    def _same_task(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["task_id"] != data["task"]["task_id"]:
            raise ValidationError("must equal task.task_id", field_name="task_id")


class CategorizationResponse(_Open):
    """``category``: a string, or a list when ``allow_multiple``; ``category_id`` alike."""

    category = StringOrList(required=True)
    category_id = StringOrList()

    @validates_schema(skip_on_field_errors=True)
    def _same_shape(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "category_id" in data and isinstance(data["category_id"], list) != isinstance(data["category"], list):
            raise ValidationError("must have the same shape as category", field_name="category_id")


def _categorization_matches_params(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A list answer needs ``allow_multiple``; a single one must not be a list."""
    multiple = params.get("allow_multiple") is True
    if multiple != isinstance(response["category"], list):
        wanted = "a list because allow_multiple is true" if multiple else "a string: allow_multiple is not set"
        return {"category": [f"Must be {wanted}."]}
    return {}


class FieldsResponse(_Open):
    """transcription and datacollection: ``fields``, keyed like the request's ``fields``."""

    # Schema.fields is marshmallow's own attribute, hence another name for the "fields" key.
    answers = fields.Dict(required=True, data_key="fields")


class PhonecallResponse(_Open):
    """``outcome`` in no_pickup | hung_up | success, with optional ``fields`` and ``choice``."""

    outcome = StrictString(required=True, validate=validate.OneOf(["no_pickup", "hung_up", "success"]))
    answers = fields.Dict(allow_none=True, data_key="fields")
    choice = StrictString(allow_none=True)


class ComparisonResponse(_Open):
    """``choice`` and/or ``fields``: at least one of them was requested."""

    choice = StrictString(allow_none=True)
    answers = fields.Dict(allow_none=True, data_key="fields")

    @validates_schema(skip_on_field_errors=True)
    def _one_of(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("choice") is None and data.get("answers") is None:
            raise ValidationError("a comparison response needs choice or fields", field_name="_schema")


class Box(_Open):
    """One bounding box, in pixels."""

    left = JsonNumber(required=True, minimum=-MAX_COORDINATE, maximum=MAX_COORDINATE)
    top = JsonNumber(required=True, minimum=-MAX_COORDINATE, maximum=MAX_COORDINATE)
    width = JsonNumber(required=True, minimum=0, maximum=MAX_COORDINATE)
    height = JsonNumber(required=True, minimum=0, maximum=MAX_COORDINATE)
    label = StrictString(allow_none=True)


class AnnotationResponse(_Open):
    """``annotations``: a list of boxes."""

    annotations = fields.List(fields.Nested(Box), required=True)


class AudiotranscriptionResponse(_Open):
    """``transcript`` and ``duration``, or ``error`` with a partial ``transcript``."""

    transcript = StrictString(allow_none=True)
    duration = JsonNumber(minimum=0, allow_none=True)
    error = StrictString(allow_none=True)

    @validates_schema(skip_on_field_errors=True)
    def _success_or_error(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("error") is not None:
            return
        missing = [name for name in ("transcript", "duration") if data.get(name) is None]
        if missing:
            raise ValidationError(
                "required unless the response carries an error", field_name=missing[0]
            )


RESPONSE_SCHEMAS: dict[str, type[Schema]] = {
    "categorization": CategorizationResponse,
    "transcription": FieldsResponse,
    "phonecall": PhonecallResponse,
    "comparison": ComparisonResponse,
    "annotation": AnnotationResponse,
    "datacollection": FieldsResponse,
    "audiotranscription": AudiotranscriptionResponse,
}
"""Which schema checks the ``response`` of each known task type."""

_ENVELOPE = EnvelopeSchema()
_RESPONSES: dict[str, Schema] = {name: schema() for name, schema in RESPONSE_SCHEMAS.items()}


def validate_callback(body: Any) -> dict[str, Any]:
    """The validation errors of a parsed callback body, as marshmallow's nested dict; empty when valid."""
    if not isinstance(body, dict):
        return {"_schema": ["The body must be a JSON object."]}
    errors: dict[str, Any] = _ENVELOPE.validate(body)
    if errors:
        return errors
    task_type = body["task"]["type"]
    schema = _RESPONSES.get(task_type)
    if schema is None:
        return {}
    response_errors = schema.validate(body["response"])
    if not response_errors and task_type == "categorization":
        response_errors = _categorization_matches_params(body["response"], body["task"].get("params") or {})
    return {"response": response_errors} if response_errors else {}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def load_callback(raw: bytes) -> dict[str, Any]:
    """Decode, parse and validate a callback body; see :func:`load_callback_text`."""
    return load_callback_text(raw)[0]


def load_callback_text(raw: bytes) -> tuple[dict[str, Any], str]:
    """Decode, parse and validate a callback body; :class:`InvalidCallbackError` says why not.

    Strict on purpose: UTF-8 only (``json.loads`` would guess UTF-16 from bytes), no NaN or
    Infinity, and Python's own limits on digits and nesting turn into a specific reason.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidCallbackError("body is not UTF-8", {"position": exc.start}) from None
    if not text.strip():
        raise InvalidCallbackError("body is empty")
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidCallbackError("body nests too deeply to parse") from None
    except ValueError as exc:
        raise InvalidCallbackError("body is not valid JSON", str(exc)) from None
    errors = validate_callback(body)
    if errors:
        raise InvalidCallbackError("body does not match the callback schema", errors)
    return body, text

"""marshmallow schemas of a Scale callback: the envelope, the task object, each type's response.

Schemas only *check*: the job carries the body as Scale sent it, unknown fields and all, so
a field Scale adds tomorrow reaches the handlers instead of being stripped here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from callback_server.events import CANCELED, ERROR, RECALLED, STATUS_EVENTS, Event, derive_event
from callback_server.exceptions import InvalidCallbackError
from callback_server.times import parse_instant

MAX_COORDINATE = 2**31
"""Bounding-box numbers beyond this are no pixel position; they are garbage or an attack."""

REFERENCE_TYPES = (
    "categorization",
    "transcription",
    "phonecall",
    "comparison",
    "annotation",
    "datacollection",
    "audiotranscription",
)
"""The seven task types of the 2016 reference: a schema each (the simulator serves these, plus COMMON_TYPES)."""

COMMON_TYPES = (
    "imageannotation",
    "textcollection",
    "namedentityrecognition",
    "documenttranscription",
    "videoannotation",
    "videoplaybackannotation",
    "lidarannotation",
)
"""Today's commonest types: typed payload classes exist for them, and the simulator creates them."""

SCALE_TYPES = frozenset(
    {
        *REFERENCE_TYPES,
        *COMMON_TYPES,
        "cuboidannotation", "documentmodel", "laneannotation", "lidarlinking", "lidarsegmentation",
        "lidartopdown", "lineannotation", "pointannotation", "polygonannotation", "segmentannotation",
        "videoboxannotation", "videocuboidannotation", "sensorfusion", "chat", "chatexperimental",
        "chatlite", "multichat", "multistage",
    }
)  # fmt: skip
"""Every type Scale names (the 2016 API's and the official client's ``TaskType``): what counters count by name."""

GEOMETRY_TYPES = ("imageannotation", "polygonannotation", "lineannotation", "pointannotation", "cuboidannotation")
"""Today's image types whose response is a list of typed shapes (``annotations``)."""

FILE_RESULT_TYPES = (
    "videoannotation",
    "videoboxannotation",
    "videoplaybackannotation",
    "videocuboidannotation",
    "lidarannotation",
    "lidarlinking",
    "lidarsegmentation",
    "lidartopdown",
    "sensorfusion",
)
"""Today's video and lidar types, whose result is a file: ``annotations: {url}``."""


class StrictString(fields.String):
    """A string, and only a string (no numbers coerced), optionally non-empty."""

    def __init__(self, *, non_empty: bool = False, **kwargs: Any) -> None:
        if non_empty:
            kwargs.setdefault("validate", validate.Length(min=1))
        super().__init__(**kwargs)


class IdString(StrictString):
    """An id or a type name: it keys Redis records and log lines, so it must be encodable text.

    JSON can escape a lone surrogate (``"\\ud800"``), which no UTF-8 encoder accepts.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(min=1, max=200), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Holds an unpaired surrogate escape: not encodable text.") from None
        return text


class StrictBoolean(fields.Field[bool]):
    """A JSON boolean; marshmallow's own Boolean would also take "yes" and 1."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Not a boolean.")
        return value


class JsonNumber(fields.Field[float]):
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


class StringOrList(fields.Field[str | list[str]]):
    """A string, or a list of strings (categorization answers with either)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | list[str]:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise ValidationError("Not a string or a list of strings.")


def _is_number(value: Any, minimum: float, maximum: float) -> bool:
    """The fast form of :class:`JsonNumber`'s check, for items of long lists."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and (not isinstance(value, float) or math.isfinite(value))
        and minimum <= value <= maximum
    )


def _is_optional_string(value: Any) -> bool:
    return value is None or isinstance(value, str)


class ListOf(fields.Field[list[Any]]):
    """A list of objects checked by ``schema``, in time linear in its length and with errors capped.

    A response may hold 100,000 boxes: marshmallow would take seconds over them, and its error
    dict for a list of empty objects grows to 65 times the body. So each item is first checked
    by ``fast`` (a plain predicate that agrees with the schema); only items it doubts go through
    marshmallow, for their messages, and checking stops at the :data:`MAX_ITEM_ERRORS`-th bad one.
    """

    def __init__(self, schema: type[Schema], fast: Callable[[Any], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schema = schema()
        self.fast = fast

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ValidationError("Not a list.")
        errors: dict[int | str, Any] = {}
        for index, item in enumerate(value):
            if isinstance(item, dict) and self.fast(item):
                continue
            item_errors = self.schema.validate(item) if isinstance(item, dict) else {"_schema": ["Not an object."]}
            if not item_errors:
                continue
            errors[index] = item_errors
            if len(errors) == MAX_ITEM_ERRORS and index + 1 < len(value):
                # Enough to say what is wrong; checking on would only spend CPU on a body being refused.
                errors["_more"] = [f"checking stopped at item {index}: later items are not checked"]
                break
        if errors:
            raise ValidationError(errors)
        return value


MAX_ITEM_ERRORS = 20
"""How many invalid items of one list a validation error lists; checking stops there."""


class Timestamp(fields.Field[str]):
    """A timestamp the pipeline relies on (``completed_at``): it must name an instant; kept as sent."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError("Not an ISO-8601 timestamp string.")
        if parse_instant(value) is None:
            raise ValidationError("Not an ISO-8601 timestamp with a UTC instant.")
        return value


class _Open(Schema):
    """Unknown fields are kept: Scale adds fields over time and they must reach the handlers."""

    class Meta:
        unknown = INCLUDE


class AuditSchema(_Open):
    """One entry of ``task.audits``: only what event derivation reads is checked."""

    audit_result = StrictString(allow_none=True)
    audit_source = StrictString(allow_none=True)
    audited_by = StrictString(allow_none=True)


def _fast_audit(item: dict[str, Any]) -> bool:
    return all(_is_optional_string(item.get(name)) for name in ("audit_result", "audit_source", "audited_by"))


class TaskSchema(_Open):
    """The task object Scale embeds in every callback (and the list API returns).

    Checked: what the pipeline reads (ids, type, status, ``completed_at``, the audit trail).
    Other timestamps (``created_at``, ``updated_at``, ...) are kept as sent, even malformed:
    they are no reason to hold back a result.
    """

    task_id = IdString(required=True)
    type = IdString(required=True)
    status = StrictString(required=True, validate=validate.OneOf(list(STATUS_EVENTS)))
    completed_at = Timestamp(allow_none=True)
    callback_url = StrictString(allow_none=True)
    instruction = StrictString(allow_none=True)
    urgency = StrictString(allow_none=True)
    params = fields.Dict(allow_none=True)
    response = fields.Dict(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    is_test = StrictBoolean(allow_none=True)
    callback_succeeded = StrictBoolean(allow_none=True)
    audits = ListOf(AuditSchema, _fast_audit, allow_none=True)
    customer_review_status = StrictString(allow_none=True)


class EnvelopeSchema(_Open):
    """The body of a callback: ``{"task_id", "response", "task"}`` (today also a top-level ``status``)."""

    task_id = IdString(required=True)
    status = StrictString(allow_none=True)
    # Required, but null for a recall; which events need an object is checked per event.
    response = fields.Dict(required=True, allow_none=True)
    task = fields.Nested(TaskSchema, required=True)

    @validates_schema(skip_on_field_errors=True)
    def _same_task(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["task_id"] != data["task"]["task_id"]:
            raise ValidationError("must equal task.task_id", field_name="task_id")


class CategorizationResponseSchema(_Open):
    """2016: ``category`` (a string, or a list), ``category_id`` alike; today: ``taxonomies``."""

    category = StringOrList()
    category_id = StringOrList()
    taxonomies = fields.Dict(keys=fields.String(), values=StringOrList())

    @validates_schema(skip_on_field_errors=True)
    def _same_shape(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "category" not in data and "taxonomies" not in data:
            raise ValidationError("a categorization response needs category or taxonomies", field_name="category")
        if "category_id" in data and isinstance(data["category_id"], list) != isinstance(data.get("category"), list):
            raise ValidationError("must have the same shape as category", field_name="category_id")


def _allows_multiple(params: dict[str, Any]) -> bool:
    """``allow_multiple`` as JSON (true) or as the form-encoded string ("true")."""
    value = params.get("allow_multiple")
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _categorization_matches_params(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A task that allows several answers gets a list; a list without ``allow_multiple`` is fine.

    The 2016 text never lists ``allow_multiple`` among the stored params, so its absence is no
    evidence that a list answer is wrong.
    """
    if "category" in response and _allows_multiple(params) and not isinstance(response["category"], list):
        return {"category": ["Must be a list because allow_multiple is true."]}
    return {}


class FieldsResponseSchema(_Open):
    """transcription and datacollection: ``fields``, keyed like the request's ``fields``."""

    # Schema.fields is marshmallow's own attribute, hence another name for the "fields" key.
    answers = fields.Dict(required=True, data_key="fields")


class PhonecallResponseSchema(_Open):
    """``outcome`` in no_pickup | hung_up | success, with optional ``fields`` and ``choice``."""

    outcome = StrictString(required=True, validate=validate.OneOf(["no_pickup", "hung_up", "success"]))
    answers = fields.Dict(allow_none=True, data_key="fields")
    choice = StrictString(allow_none=True)


class ComparisonResponseSchema(_Open):
    """``choice`` and/or ``fields``: at least one of them was requested."""

    choice = StrictString(allow_none=True)
    answers = fields.Dict(allow_none=True, data_key="fields")

    @validates_schema(skip_on_field_errors=True)
    def _one_of(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("choice") is None and data.get("answers") is None:
            raise ValidationError("a comparison response needs choice or fields", field_name="_schema")


_COORD = {"minimum": -MAX_COORDINATE, "maximum": MAX_COORDINATE}
_SIZE = {"minimum": 0, "maximum": MAX_COORDINATE}


class BoxSchema(_Open):
    """One bounding box, in pixels (``attributes`` and ``uuid`` when Scale sends them)."""

    left = JsonNumber(required=True, **_COORD)
    top = JsonNumber(required=True, **_COORD)
    width = JsonNumber(required=True, **_SIZE)
    height = JsonNumber(required=True, **_SIZE)
    label = StrictString(allow_none=True)
    uuid = StrictString(allow_none=True)
    attributes = fields.Dict(allow_none=True)


def _fast_labels(item: dict[str, Any]) -> bool:
    attributes = item.get("attributes")
    return (
        _is_optional_string(item.get("label"))
        and _is_optional_string(item.get("uuid"))
        and (attributes is None or isinstance(attributes, dict))
    )


def _is_size(value: Any) -> bool:
    kind = type(value)
    return (kind is int or kind is float) and 0 <= value <= MAX_COORDINATE


def _fast_box(item: dict[str, Any]) -> bool:
    return (
        _is_coordinate(item.get("left"))
        and _is_coordinate(item.get("top"))
        and _is_size(item.get("width"))
        and _is_size(item.get("height"))
        and _fast_labels(item)
    )


class AnnotationResponseSchema(_Open):
    """``annotations``: a list of boxes."""

    annotations = ListOf(BoxSchema, _fast_box, required=True)


class VertexSchema(_Open):
    """A point of a polygon or a line."""

    x = JsonNumber(required=True, **_COORD)
    y = JsonNumber(required=True, **_COORD)


def _is_coordinate(value: Any) -> bool:
    """The fast form of a coordinate's :class:`JsonNumber` check (exact types: no bool; nan and inf fail the range)."""
    kind = type(value)
    return (kind is int or kind is float) and -MAX_COORDINATE <= value <= MAX_COORDINATE


def _fast_vertex(item: dict[str, Any]) -> bool:
    return _is_coordinate(item.get("x")) and _is_coordinate(item.get("y"))


def _fast_vertices(vertices: Any) -> bool:
    """A list of vertices, checked in a plain loop: a 10 MiB polygon body holds 300,000 of them."""
    if type(vertices) is not list:
        return False
    for vertex in vertices:
        if type(vertex) is not dict or not (_is_coordinate(vertex.get("x")) and _is_coordinate(vertex.get("y"))):
            return False
    return True


class GeometrySchema(_Open):
    """One imageannotation shape: a box, polygon, line, point, cuboid, ellipse, or one Scale adds later."""

    type = StrictString(allow_none=True)
    label = StrictString(allow_none=True)
    uuid = StrictString(allow_none=True)
    attributes = fields.Dict(allow_none=True)

    @validates_schema(skip_on_field_errors=True)
    def _shape(self, data: dict[str, Any], **kwargs: Any) -> None:
        shape = data.get("type") or "box"
        if shape == "box":
            errors = BoxSchema().validate(data)
        elif shape in ("polygon", "line"):
            errors = _VerticesSchema().validate(data)
        elif shape == "point":
            errors = VertexSchema().validate(data)
        else:
            errors = {}  # cuboid, ellipse and shapes to come: kept as sent
        if errors:
            raise ValidationError(errors)


class _VerticesSchema(_Open):
    vertices = ListOf(VertexSchema, _fast_vertex, required=True)


def _fast_geometry(item: dict[str, Any]) -> bool:
    shape = item.get("type") or "box"
    if not isinstance(shape, str) or not _fast_labels(item):
        return False
    if shape == "box":
        return _fast_box(item)
    if shape in ("polygon", "line"):
        return _fast_vertices(item.get("vertices"))
    if shape == "point":
        return _fast_vertex(item)
    return True


class ImageannotationResponseSchema(_Open):
    """imageannotation (and the polygon/line/point/cuboid types): typed shapes, ``global_attributes``."""

    annotations = ListOf(GeometrySchema, _fast_geometry, required=True)
    global_attributes = fields.Dict(allow_none=True)


class TextcollectionResponseSchema(_Open):
    """``annotations``: values keyed by the request's field ids."""

    annotations = fields.Dict(required=True)


class EntitySchema(_Open):
    """A named entity: a labelled span of the text."""

    id = StrictString(allow_none=True)
    start = JsonNumber(allow_none=True, minimum=0)
    end = JsonNumber(allow_none=True, minimum=0)
    text = StrictString(allow_none=True)
    label = StrictString(allow_none=True)


def _fast_entity(item: dict[str, Any]) -> bool:
    return all(_is_optional_string(item.get(n)) for n in ("id", "text", "label")) and all(
        item.get(n) is None or _is_number(item[n], 0, math.inf) for n in ("start", "end")
    )


class RelationshipSchema(_Open):
    """A named link between two entities."""

    id = StrictString(allow_none=True)
    source_ref = StrictString(allow_none=True)
    target_ref = StrictString(allow_none=True)
    name = StrictString(allow_none=True)


def _fast_relationship(item: dict[str, Any]) -> bool:
    return all(_is_optional_string(item.get(n)) for n in ("id", "source_ref", "target_ref", "name"))


class NamedEntityResponseSchema(_Open):
    """namedentityrecognition: ``annotations`` (entities) and ``relationships``."""

    annotations = ListOf(EntitySchema, _fast_entity, required=True)
    relationships = ListOf(RelationshipSchema, _fast_relationship, allow_none=True)


class DocumentFieldSchema(_Open):
    """One transcribed field of a document."""

    uuid = StrictString(allow_none=True)
    label = StrictString(allow_none=True)
    text = StrictString(allow_none=True)
    page = JsonNumber(allow_none=True, minimum=0)
    location = fields.Dict(allow_none=True)


def _fast_document_field(item: dict[str, Any]) -> bool:
    location = item.get("location")
    page = item.get("page")
    return (
        all(_is_optional_string(item.get(n)) for n in ("uuid", "label", "text"))
        and (page is None or _is_number(page, 0, math.inf))
        and (location is None or isinstance(location, dict))
    )


class DocumentTranscriptionResponseSchema(_Open):
    """documenttranscription: ``annotations``, one per transcribed field."""

    annotations = ListOf(DocumentFieldSchema, _fast_document_field, required=True)


class FileLinkSchema(_Open):
    """Where Scale put a result file (older video results held the frames inline instead)."""

    url = StrictString(allow_none=True)


class FileResultResponseSchema(_Open):
    """video and lidar types: the result is a file, ``annotations: {url}`` (and ``events: {url}``)."""

    annotations = fields.Nested(FileLinkSchema, required=True)
    events = fields.Nested(FileLinkSchema, allow_none=True)


class AttachmentErrorSchema(_Open):
    """An attachment Scale could not fetch, with the HTTP status it got."""

    url = StrictString(allow_none=True)
    statusCode = JsonNumber(allow_none=True)  # Scale's own (camel-case) name


def _fast_attachment_error(item: dict[str, Any]) -> bool:
    code = item.get("statusCode")
    return _is_optional_string(item.get("url")) and (code is None or _is_number(code, -math.inf, math.inf))


class ErrorResponseSchema(_Open):
    """An error at creation: ``{"error", "attachments": [...]}`` (or ``frames`` for lidar and video)."""

    error = StrictString(required=True)
    attachments = ListOf(AttachmentErrorSchema, _fast_attachment_error, allow_none=True)
    frames = fields.List(fields.Raw(), allow_none=True)


class AudiotranscriptionResponseSchema(_Open):
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
            raise ValidationError("required unless the response carries an error", field_name=missing[0])


def _is_id(value: Any) -> bool:
    """The fast form of :class:`IdString` (non-ASCII text goes to marshmallow, for the surrogate check)."""
    return isinstance(value, str) and 0 < len(value) <= 200 and value.isascii()


_OPTIONAL_TASK_STRINGS = ("callback_url", "instruction", "urgency", "customer_review_status")
_OPTIONAL_TASK_OBJECTS = ("params", "response", "metadata")
_OPTIONAL_TASK_BOOLEANS = ("is_test", "callback_succeeded")


def fast_envelope(body: dict[str, Any]) -> bool:
    """True only for a body :class:`EnvelopeSchema` accepts; False says "ask marshmallow".

    The envelope and task are on every callback's path, and marshmallow spends ~90 us on them;
    these plain checks say yes to an ordinary body in a few. They must never accept what the
    schema refuses: ``tests/callback_server/test_property.py`` holds them to that.
    """
    task = body.get("task")
    if not isinstance(task, dict) or "response" not in body:
        return False
    response = body["response"]
    status = body.get("status")
    if not (_is_id(body.get("task_id")) and body["task_id"] == task.get("task_id")):
        return False
    if not (response is None or isinstance(response, dict)) or not (status is None or isinstance(status, str)):
        return False
    status_value = task.get("status")
    if not (_is_id(task.get("type")) and isinstance(status_value, str) and status_value in STATUS_EVENTS):
        return False
    completed_at = task.get("completed_at")
    if completed_at is not None and (not isinstance(completed_at, str) or parse_instant(completed_at) is None):
        return False
    audits = task.get("audits")
    if audits is not None and not (
        isinstance(audits, list) and all(isinstance(audit, dict) and _fast_audit(audit) for audit in audits)
    ):
        return False
    return (
        all(_is_optional_string(task.get(name)) for name in _OPTIONAL_TASK_STRINGS)
        and all(task.get(name) is None or isinstance(task[name], dict) for name in _OPTIONAL_TASK_OBJECTS)
        and all(task.get(name) is None or isinstance(task[name], bool) for name in _OPTIONAL_TASK_BOOLEANS)
    )


def _is_answer(value: Any) -> bool:
    """The fast form of :class:`StringOrList`."""
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value))


def _fast_categorization(response: dict[str, Any]) -> bool:
    if "category" not in response and "taxonomies" not in response:
        return False
    if "category" in response and not _is_answer(response["category"]):
        return False
    if "category_id" in response and not (
        _is_answer(response["category_id"])
        and isinstance(response["category_id"], list) == isinstance(response.get("category"), list)
    ):
        return False
    taxonomies = response.get("taxonomies", {})
    return isinstance(taxonomies, dict) and all(
        isinstance(name, str) and _is_answer(answer) for name, answer in taxonomies.items()
    )


def _fast_fields(response: dict[str, Any]) -> bool:
    return isinstance(response.get("fields"), dict)


FAST_RESPONSES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "categorization": _fast_categorization,
    "transcription": _fast_fields,
    "datacollection": _fast_fields,
}
"""Plain checks that say yes to an ordinary response of the commonest types before marshmallow is
asked (as :func:`fast_envelope` does for the envelope); they never accept what the schema refuses."""


RESPONSE_SCHEMAS: dict[str, type[Schema]] = {
    "categorization": CategorizationResponseSchema,
    "transcription": FieldsResponseSchema,
    "phonecall": PhonecallResponseSchema,
    "comparison": ComparisonResponseSchema,
    "annotation": AnnotationResponseSchema,
    "datacollection": FieldsResponseSchema,
    "audiotranscription": AudiotranscriptionResponseSchema,
    **dict.fromkeys(GEOMETRY_TYPES, ImageannotationResponseSchema),
    "textcollection": TextcollectionResponseSchema,
    "namedentityrecognition": NamedEntityResponseSchema,
    "documenttranscription": DocumentTranscriptionResponseSchema,
    **dict.fromkeys(FILE_RESULT_TYPES, FileResultResponseSchema),
}
"""Which schema checks the ``response`` of each known task type (other types are kept unchecked)."""

_ENVELOPE = EnvelopeSchema()
_RESPONSES: dict[str, Schema] = {name: schema() for name, schema in RESPONSE_SCHEMAS.items()}
_ERROR = ErrorResponseSchema()


def validate_callback(body: Any) -> dict[str, Any]:
    """The validation errors of a parsed callback body, as marshmallow's nested dict; empty when valid."""
    return check_callback(body)[0]


def check_callback(body: Any) -> tuple[dict[str, Any], Event | None]:
    """The validation errors of a parsed callback body (empty when valid) and the event it is.

    What is checked depends on the event (:func:`callback_server.events.derive_event`): the
    type's response schema for a completion or an audit, the documented error shape for an
    error, nothing but "an object or null" for a recall or a cancellation. The event is
    derived here once and handed on, so the accept path never derives it again; it is None
    when the envelope itself is invalid.
    """
    if not isinstance(body, dict):
        return {"_schema": ["The body must be a JSON object."]}, None
    errors: dict[str, Any] = {} if fast_envelope(body) else _ENVELOPE.validate(body)
    if errors:
        return errors, None
    task = body["task"]
    event = derive_event(task)
    response = body["response"]
    if event.name in (RECALLED, CANCELED):
        return {}, event
    if response is None:
        return {"response": [f"Must be an object for a {event.name} event."]}, event
    if event.name == ERROR:
        response_errors = _ERROR.validate(response)
    else:
        schema = _RESPONSES.get(task["type"])
        if schema is None:
            return {}, event
        fast = FAST_RESPONSES.get(task["type"])
        response_errors = {} if fast is not None and fast(response) else schema.validate(response)
        if not response_errors and task["type"] == "categorization":
            response_errors = _categorization_matches_params(response, task.get("params") or {})
    return ({"response": response_errors} if response_errors else {}), event


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float; ``1e400`` would silently become ``inf``, which no JSON can carry on."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is too large to represent")
    return value


def load_callback(raw: bytes) -> dict[str, Any]:
    """Decode, parse and validate a callback body; see :func:`load_callback_text`."""
    return load_callback_text(raw)[0]


def parse_json(raw: bytes) -> Any:
    """Parse a JSON document as the receiver does everywhere (callbacks, replays, the list API).

    orjson first: it is three times faster on a body at the size limit. It refuses what JSON
    allows but it cannot represent (an escaped lone surrogate), and reads integers beyond 64
    bits as floats; everything it refuses goes through the standard library, which either
    parses it or says precisely why not. Raises ValueError (or RecursionError).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)


def load_callback_text(raw: bytes) -> tuple[dict[str, Any], str]:
    """Decode, parse and validate a callback body; see :func:`load_callback_event`."""
    body, text, _ = load_callback_event(raw)
    return body, text


def load_callback_event(raw: bytes) -> tuple[dict[str, Any], str, Event]:
    """Decode, parse and validate a callback body: the body, its text and its event.

    :class:`InvalidCallbackError` says why not. Strict on purpose: UTF-8 only (``json.loads``
    would guess UTF-16 from bytes), no NaN, Infinity or numbers too large for a float, and
    Python's own limits on digits and nesting turn into a specific reason.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidCallbackError("body is not UTF-8", {"position": exc.start}) from None
    if not text or text.isspace():  # as `not text.strip()`, without copying the body
        raise InvalidCallbackError("body is empty")
    try:
        body = parse_json(raw)
    except RecursionError:
        raise InvalidCallbackError("body nests too deeply to parse") from None
    except ValueError as exc:
        raise InvalidCallbackError("body is not valid JSON", str(exc)) from None
    errors, event = check_callback(body)
    if errors or event is None:
        raise InvalidCallbackError("body does not match the callback schema", errors)
    return body, text, event

"""Typed task objects that handlers receive, one dataclass per task type.

Built from the body the web tier validated, so handlers read ``task.response.category``
instead of digging through dicts; ``raw`` keeps everything Scale sent, unknown fields too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callback_server.auth import TEST
from callback_server.events import AUDIT, COMPLETED, ERROR, Event
from callback_server.schemas import FILE_RESULT_TYPES, GEOMETRY_TYPES
from callback_server.times import parse_instant


@dataclass(frozen=True)
class Box:
    """A bounding box in pixels (legacy ``annotation``; ``attributes`` and ``uuid`` when sent)."""

    left: float
    top: float
    width: float
    height: float
    label: str | None = None
    uuid: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CategorizationResponse:
    """2016: the chosen category (a list when several) and its id; today: ``taxonomies``."""

    category: str | list[str] | None = None
    category_id: str | list[str] | None = None
    taxonomies: dict[str, list[str]] = field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        """The answer as a list, whatever its shape (every taxonomy's choices, for today's form)."""
        if self.category is None:
            return [choice for choices in self.taxonomies.values() for choice in choices]
        return list(self.category) if isinstance(self.category, list) else [self.category]


@dataclass(frozen=True)
class FieldsResponse:
    """Transcribed or collected values, keyed like the request's ``fields``."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class PhonecallResponse:
    """How the call went, plus the recorded fields and choice when requested."""

    outcome: str
    fields: dict[str, Any] | None = None
    choice: str | None = None


@dataclass(frozen=True)
class ComparisonResponse:
    """The choice and/or fields of a comparison."""

    choice: str | None = None
    fields: dict[str, Any] | None = None


@dataclass(frozen=True)
class AnnotationResponse:
    """The boxes drawn."""

    annotations: list[Box]


@dataclass(frozen=True)
class AudiotranscriptionResponse:
    """A transcript and the audio's duration in seconds, or an error with a partial transcript."""

    transcript: str | None = None
    duration: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True unless Scale reported an error."""
        return self.error is None


@dataclass(frozen=True)
class Shape:
    """One shape of an imageannotation; ``raw`` keeps every field Scale sent with it."""

    type: str
    label: str | None = None
    uuid: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Point:
    """A vertex in pixels."""

    x: float
    y: float


@dataclass(frozen=True)
class BoxShape(Shape):
    """``type: box``."""

    left: float = 0.0
    top: float = 0.0
    width: float = 0.0
    height: float = 0.0


@dataclass(frozen=True)
class PolygonShape(Shape):
    """``type: polygon`` (closed) or ``line`` (open): its vertices in order."""

    vertices: list[Point] = field(default_factory=list)


@dataclass(frozen=True)
class PointShape(Shape):
    """``type: point``."""

    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True)
class CuboidShape(Shape):
    """``type: cuboid``: its vertices (``raw`` has the rest)."""

    vertices: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class EllipseShape(Shape):
    """``type: ellipse``: centre, radii and rotation."""

    x: float | None = None
    y: float | None = None
    rx: float | None = None
    ry: float | None = None
    angle: float | None = None


@dataclass(frozen=True)
class ImageannotationResponse:
    """Shapes by geometry (``boxes``, ``polygons``, ... are views of ``annotations``), ``global_attributes``."""

    annotations: list[Shape]
    global_attributes: dict[str, Any] = field(default_factory=dict)

    def of_type(self, shape: type[Shape]) -> list[Any]:
        """The annotations of one shape class, e.g. ``of_type(BoxShape)``."""
        return [a for a in self.annotations if type(a) is shape]

    @property
    def boxes(self) -> list[BoxShape]:
        """The box annotations."""
        return self.of_type(BoxShape)

    @property
    def polygons(self) -> list[PolygonShape]:
        """The polygon and line annotations."""
        return self.of_type(PolygonShape)


@dataclass(frozen=True)
class TextcollectionResponse:
    """Collected values keyed by the request's field ids."""

    annotations: dict[str, Any]


@dataclass(frozen=True)
class Entity:
    """A labelled span of the text."""

    id: str | None
    start: float | None
    end: float | None
    text: str | None
    label: str | None


@dataclass(frozen=True)
class Relationship:
    """A named link from one entity (``source_ref``) to another (``target_ref``)."""

    id: str | None
    source_ref: str | None
    target_ref: str | None
    name: str | None


@dataclass(frozen=True)
class NamedEntityResponse:
    """Entities and the relationships between them."""

    annotations: list[Entity]
    relationships: list[Relationship] = field(default_factory=list)


@dataclass(frozen=True)
class DocumentField:
    """One transcribed field of a document; ``raw`` keeps ``refs`` and the rest."""

    uuid: str | None
    page: float | None
    label: str | None
    text: str | None
    location: dict[str, Any] | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class DocumentTranscriptionResponse:
    """One entry per transcribed field."""

    annotations: list[DocumentField]


@dataclass(frozen=True)
class FileResultResponse:
    """A video or lidar result: a file to download (``result_url``), and video playback's ``events_url``."""

    result_url: str | None
    events_url: str | None = None
    annotations: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttachmentError:
    """An attachment Scale could not fetch, and the HTTP status it got."""

    url: str | None
    status_code: int | None


@dataclass(frozen=True)
class TaskError:
    """Why Scale could not create the task (an ``error`` event)."""

    message: str
    attachments: list[AttachmentError] = field(default_factory=list)
    frames: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Audit:
    """One review of a completed task: by whom, when, what it concluded (``result``), customer or Scale."""

    audited_by: str | None
    audited_at: datetime | None
    result: str | None
    source: str | None
    audit_time_secs: float | None = None


@dataclass(frozen=True)
class Task:
    """Fields every task type shares; ``delivery_id`` is a stable idempotency key for your own stores.

    ``event`` says why Scale called (``completed``, ``audit``, ``error``, ``recalled``,
    ``canceled``); ``response`` is typed for completions and audits and None otherwise (an
    error's details are in ``error``).
    """

    task_id: str
    type: str
    status: str | None
    params: dict[str, Any]
    response: Any
    metadata: dict[str, Any]
    created_at: datetime | None
    completed_at: datetime | None
    is_test: bool
    delivery_id: str
    mode: str
    source: str
    instruction: str | None = None
    urgency: str | None = None
    callback_url: str | None = None
    event: str = COMPLETED
    review_status: str | None = None
    updated_at: datetime | None = None
    project: str | None = None
    batch: str | None = None
    unique_id: str | None = None
    tags: list[str] = field(default_factory=list)
    audits: list[Audit] = field(default_factory=list)
    customer_review_status: str | None = None
    error: TaskError | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class CategorizationTask(Task):
    """A categorization."""

    response: CategorizationResponse | None


@dataclass(frozen=True)
class TranscriptionTask(Task):
    """A transcription."""

    response: FieldsResponse | None


@dataclass(frozen=True)
class PhonecallTask(Task):
    """A phone call."""

    response: PhonecallResponse | None


@dataclass(frozen=True)
class ComparisonTask(Task):
    """A comparison."""

    response: ComparisonResponse | None


@dataclass(frozen=True)
class AnnotationTask(Task):
    """A bounding-box annotation (the 2016 type)."""

    response: AnnotationResponse | None


@dataclass(frozen=True)
class DatacollectionTask(Task):
    """A data collection."""

    response: FieldsResponse | None


@dataclass(frozen=True)
class AudiotranscriptionTask(Task):
    """An audio transcription (its response may itself report an error)."""

    response: AudiotranscriptionResponse | None


@dataclass(frozen=True)
class ImageannotationTask(Task):
    """An imageannotation (also polygon, line, point and cuboid annotation tasks)."""

    response: ImageannotationResponse | None


@dataclass(frozen=True)
class TextcollectionTask(Task):
    """A text collection."""

    response: TextcollectionResponse | None


@dataclass(frozen=True)
class NamedEntityRecognitionTask(Task):
    """A named entity recognition."""

    response: NamedEntityResponse | None


@dataclass(frozen=True)
class DocumentTranscriptionTask(Task):
    """A document transcription."""

    response: DocumentTranscriptionResponse | None


@dataclass(frozen=True)
class FileResultTask(Task):
    """A video or lidar task, whose result is a file."""

    response: FileResultResponse | None


@dataclass(frozen=True)
class UnknownTask(Task):
    """A task type this receiver has no class for; ``response`` is the dict Scale sent."""

    response: dict[str, Any] | None


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _shape(data: dict[str, Any]) -> Shape:
    kind = _text(data.get("type")) or "box"
    common: dict[str, Any] = {
        "type": kind,
        "label": _text(data.get("label")),
        "uuid": _text(data.get("uuid")),
        "attributes": _dict(data.get("attributes")),
        "raw": data,
    }
    if kind == "box":
        return BoxShape(**common, left=data["left"], top=data["top"], width=data["width"], height=data["height"])
    if kind in ("polygon", "line"):
        return PolygonShape(**common, vertices=[Point(v["x"], v["y"]) for v in data["vertices"]])
    if kind == "point":
        return PointShape(**common, x=data["x"], y=data["y"])
    if kind == "cuboid":
        return CuboidShape(**common, vertices=[v for v in _list(data.get("vertices")) if isinstance(v, dict)])
    if kind == "ellipse":
        geometry: dict[str, Any] = {name: _number(data.get(name)) for name in ("x", "y", "rx", "ry", "angle")}
        return EllipseShape(**common, **geometry)
    return Shape(**common)


def _taxonomies(value: Any) -> dict[str, list[str]]:
    return {name: [choice] if isinstance(choice, str) else list(choice) for name, choice in _dict(value).items()}


def _response(task_type: str, data: dict[str, Any]) -> Any:
    """The typed response of a type, from a response its schema accepted."""
    if task_type == "categorization":
        return CategorizationResponse(
            category=data.get("category"),
            category_id=data.get("category_id"),
            taxonomies=_taxonomies(data.get("taxonomies")),
        )
    if task_type in ("transcription", "datacollection"):
        return FieldsResponse(fields=data["fields"])
    if task_type == "phonecall":
        return PhonecallResponse(**_known(PhonecallResponse, data))
    if task_type == "comparison":
        return ComparisonResponse(**_known(ComparisonResponse, data))
    if task_type == "annotation":
        return AnnotationResponse(
            annotations=[
                Box(**{**_known(Box, box), "attributes": _dict(box.get("attributes"))}) for box in data["annotations"]
            ]
        )
    if task_type == "audiotranscription":
        return AudiotranscriptionResponse(**_known(AudiotranscriptionResponse, data))
    if task_type in GEOMETRY_TYPES:
        return ImageannotationResponse(
            annotations=[_shape(item) for item in data["annotations"]],
            global_attributes=_dict(data.get("global_attributes")),
        )
    if task_type == "textcollection":
        return TextcollectionResponse(annotations=data["annotations"])
    if task_type == "namedentityrecognition":
        return NamedEntityResponse(
            annotations=[
                Entity(*(e.get(n) for n in ("id", "start", "end", "text", "label"))) for e in data["annotations"]
            ],
            relationships=[
                Relationship(*(r.get(n) for n in ("id", "source_ref", "target_ref", "name")))
                for r in _list(data.get("relationships"))
            ],
        )
    if task_type == "documenttranscription":
        return DocumentTranscriptionResponse(
            annotations=[
                DocumentField(a.get("uuid"), a.get("page"), a.get("label"), a.get("text"), a.get("location"), raw=a)
                for a in data["annotations"]
            ]
        )
    if task_type in FILE_RESULT_TYPES:
        annotations = _dict(data.get("annotations"))
        return FileResultResponse(
            result_url=_text(annotations.get("url")),
            events_url=_text(_dict(data.get("events")).get("url")),
            annotations=annotations,
        )
    return data


def _error(data: Any) -> TaskError:
    data = _dict(data)
    attachments = [
        AttachmentError(url=_text(a.get("url")), status_code=_status_code(a.get("statusCode")))
        for a in _list(data.get("attachments"))
        if isinstance(a, dict)
    ]
    return TaskError(message=_text(data.get("error")) or "", attachments=attachments, frames=_list(data.get("frames")))


def _status_code(value: Any) -> int | None:
    number = _number(value)
    if number is None or abs(number) >= 1000 or number != int(number):
        return None
    return int(number)


def _audits(value: Any) -> list[Audit]:
    return [
        Audit(
            audited_by=_text(a.get("audited_by")),
            audited_at=parse_instant(a.get("audited_at")),
            result=_text(a.get("audit_result")),
            source=_text(a.get("audit_source")),
            audit_time_secs=_number(a.get("audit_time_secs")),
        )
        for a in _list(value)
        if isinstance(a, dict)
    ]


TASK_CLASSES: dict[str, type[Task]] = {
    "categorization": CategorizationTask,
    "transcription": TranscriptionTask,
    "phonecall": PhonecallTask,
    "comparison": ComparisonTask,
    "annotation": AnnotationTask,
    "datacollection": DatacollectionTask,
    "audiotranscription": AudiotranscriptionTask,
    **dict.fromkeys(GEOMETRY_TYPES, ImageannotationTask),
    "textcollection": TextcollectionTask,
    "namedentityrecognition": NamedEntityRecognitionTask,
    "documenttranscription": DocumentTranscriptionTask,
    **dict.fromkeys(FILE_RESULT_TYPES, FileResultTask),
}
"""The dataclass a handler of each type receives; other types get :class:`UnknownTask`."""


def build_task(delivery: dict[str, Any]) -> Task:
    """The typed task for a queued delivery (the job's argument)."""
    body = delivery["body"]
    task = body["task"]
    task_type = task["type"]
    event = Event(delivery["event"], delivery.get("review_status"))
    cls = TASK_CLASSES.get(task_type, UnknownTask)
    response = body.get("response")
    if event.name in (COMPLETED, AUDIT) and isinstance(response, dict):
        typed = _response(task_type, response)
    else:
        typed = response if cls is UnknownTask else None
    tags = task.get("tags")
    return cls(
        task_id=body["task_id"],
        type=task_type,
        status=task.get("status"),
        params=_dict(task.get("params")),
        response=typed,
        metadata=_dict(task.get("metadata")),
        created_at=parse_instant(task.get("created_at")),
        completed_at=parse_instant(task.get("completed_at")),
        is_test=delivery["mode"] == TEST or task.get("is_test") is True,  # the test key says so, whatever the body says
        delivery_id=delivery["delivery_id"],
        mode=delivery["mode"],
        source=delivery["source"],
        instruction=_text(task.get("instruction")),
        urgency=_text(task.get("urgency")),
        callback_url=_text(task.get("callback_url")),
        event=event.name,
        review_status=event.review_status,
        updated_at=parse_instant(task.get("updated_at")),
        project=_text(task.get("project")),
        batch=_text(task.get("batch")),
        unique_id=_text(task.get("unique_id")),
        tags=[t for t in _list(tags) if isinstance(t, str)] if not isinstance(tags, str) else [tags],
        audits=_audits(task.get("audits")),
        customer_review_status=_text(task.get("customer_review_status")),
        error=_error(response) if event.name == ERROR else None,
        raw=body,
    )

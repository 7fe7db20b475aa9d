"""Typed task objects that handlers receive, one dataclass per task type.

Built from the body the web tier validated, so handlers read ``task.response.category``
instead of digging through dicts; ``raw`` keeps everything Scale sent, unknown fields too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callback_server.schemas import parse_timestamp


@dataclass(frozen=True)
class Box:
    """A bounding box in pixels."""

    left: float
    top: float
    width: float
    height: float
    label: str | None = None


@dataclass(frozen=True)
class CategorizationResponse:
    """The chosen category (a list when ``allow_multiple``) and its id when ``category_ids`` was given."""

    category: str | list[str]
    category_id: str | list[str] | None = None

    @property
    def categories(self) -> list[str]:
        """The answer as a list, whatever its shape."""
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
class Task:
    """Fields every task type shares; ``delivery_id`` is a stable idempotency key for your own stores."""

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
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class CategorizationTask(Task):
    """A completed categorization."""

    response: CategorizationResponse


@dataclass(frozen=True)
class TranscriptionTask(Task):
    """A completed transcription."""

    response: FieldsResponse


@dataclass(frozen=True)
class PhonecallTask(Task):
    """A completed phone call."""

    response: PhonecallResponse


@dataclass(frozen=True)
class ComparisonTask(Task):
    """A completed comparison."""

    response: ComparisonResponse


@dataclass(frozen=True)
class AnnotationTask(Task):
    """A completed bounding-box annotation."""

    response: AnnotationResponse


@dataclass(frozen=True)
class DatacollectionTask(Task):
    """A completed data collection."""

    response: FieldsResponse


@dataclass(frozen=True)
class AudiotranscriptionTask(Task):
    """A completed (or failed) audio transcription."""

    response: AudiotranscriptionResponse


@dataclass(frozen=True)
class UnknownTask(Task):
    """A task type this receiver has no schema for; ``response`` is the dict Scale sent."""

    response: dict[str, Any]


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _response(task_type: str, data: dict[str, Any]) -> Any:
    if task_type == "categorization":
        return CategorizationResponse(**_known(CategorizationResponse, data))
    if task_type in ("transcription", "datacollection"):
        return FieldsResponse(fields=data["fields"])
    if task_type == "phonecall":
        return PhonecallResponse(**_known(PhonecallResponse, data))
    if task_type == "comparison":
        return ComparisonResponse(**_known(ComparisonResponse, data))
    if task_type == "annotation":
        return AnnotationResponse(annotations=[Box(**_known(Box, box)) for box in data["annotations"]])
    if task_type == "audiotranscription":
        return AudiotranscriptionResponse(**_known(AudiotranscriptionResponse, data))
    return data


TASK_CLASSES: dict[str, type[Task]] = {
    "categorization": CategorizationTask,
    "transcription": TranscriptionTask,
    "phonecall": PhonecallTask,
    "comparison": ComparisonTask,
    "annotation": AnnotationTask,
    "datacollection": DatacollectionTask,
    "audiotranscription": AudiotranscriptionTask,
}
"""The dataclass a handler of each type receives; other types get :class:`UnknownTask`."""


def _time(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def build_task(delivery: dict[str, Any]) -> Task:
    """The typed task for a queued delivery (the job's argument)."""
    body = delivery["body"]
    task = body["task"]
    task_type = task["type"]
    cls = TASK_CLASSES.get(task_type, UnknownTask)
    return cls(
        task_id=body["task_id"],
        type=task_type,
        status=task.get("status"),
        params=task.get("params") or {},
        response=_response(task_type, body["response"]),
        metadata=task.get("metadata") or {},
        created_at=_time(task.get("created_at")),
        completed_at=_time(task.get("completed_at")),
        is_test=bool(task.get("is_test", False)),
        delivery_id=delivery["delivery_id"],
        mode=delivery["mode"],
        source=delivery["source"],
        instruction=task.get("instruction"),
        urgency=task.get("urgency"),
        callback_url=task.get("callback_url"),
        raw=body,
    )

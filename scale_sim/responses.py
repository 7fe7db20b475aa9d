"""Made-up responses for completed tasks, valid for each type and its params, reproducible from a seed.

Like Scale's test mode, the answers are not true; they only have the documented shape, so a
receiver can be exercised end to end. The same seed and task id always give the same response.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from typing import Any

from scale_sim import defaults
from scale_sim.validation import FRAME_TYPES, SIM_FILE_RESULT_TYPES

IMAGE_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720), (1920, 1080))
"""Plausible image sizes the boxes of an annotation response fit inside."""

PHONECALL_OUTCOMES = ("no_pickup", "hung_up", "success")
"""Documented phonecall outcomes."""

_WORDS = (
    "the avocado is a pear shaped fruit with leathery skin smooth edible flesh and a large stone "
    "scale sends a callback when the task is complete so the receiver can store the answer"
).split()
_FILLERS = ("um", "hm", "uh")


SIM_ERROR_MARK = "sim-error"
"""An attachment URL containing this fails its task at creation (an error callback instead of a completion)."""

ERROR_MESSAGE = "One or more attachments could not be fetched (HTTP 403 Forbidden)"
"""The error an error-at-creation response carries when none is given."""

RESULT_BASE = "https://scale-sim.invalid/results"
"""Where file results (video, lidar) are said to be: a reserved name that never resolves."""


def rng_for(seed: int, task_id: str, salt: str = "") -> random.Random:
    """The generator for one task: seeded by SCALE_SIM_SEED, the task id and a salt (string seeds are stable)."""
    return random.Random(f"{seed}:{task_id}{':' + salt if salt else ''}")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _fields(rng: random.Random, fields: dict[str, str]) -> dict[str, str]:
    return {key: f"{_text(rng, 2)} {rng.randrange(100, 1000)}" for key in fields}


def categorization(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One category (a list of them when allow_multiple), with ids when category_ids was given."""
    categories: list[str] = params["categories"]
    ids_by_category = {value: key for key, value in params.get("category_ids", {}).items()}
    if params.get("allow_multiple"):
        chosen = sorted(rng.sample(range(len(categories)), rng.randint(1, len(categories))))
        picked = [categories[index] for index in chosen]
        response: dict[str, Any] = {"category": picked}
        if ids_by_category:
            response["category_id"] = [ids_by_category[c] for c in picked if c in ids_by_category]
        return response
    category = rng.choice(categories)
    response = {"category": category}
    if category in ids_by_category:
        response["category_id"] = ids_by_category[category]
    return response


def fields_only(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """transcription and datacollection: a value for every requested field."""
    return {"fields": _fields(rng, params["fields"])}


def phonecall(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """An outcome, plus fields and a choice when the request asked for them."""
    response: dict[str, Any] = {"outcome": rng.choice(PHONECALL_OUTCOMES)}
    if params.get("fields"):
        response["fields"] = _fields(rng, params["fields"])
    if params.get("choices"):
        response["choice"] = rng.choice(params["choices"])
    return response


def comparison(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A choice and/or fields, whichever the request asked for."""
    response: dict[str, Any] = {}
    if params.get("choices"):
        response["choice"] = rng.choice(params["choices"])
    if params.get("fields"):
        response["fields"] = _fields(rng, params["fields"])
    return response


def _box(rng: random.Random, width: int, height: int, labels: list[str] | None) -> dict[str, Any]:
    box_width = rng.randint(8, width // 2)
    box_height = rng.randint(8, height // 2)
    box: dict[str, Any] = {
        "left": rng.randint(0, width - box_width),
        "top": rng.randint(0, height - box_height),
        "width": box_width,
        "height": box_height,
    }
    if labels:
        box["label"] = rng.choice(labels)
    return box


def annotation(params: dict[str, Any], rng: random.Random, *, oversize: bool = False) -> dict[str, Any]:
    """Boxes in pixels inside a plausible image; labelled when with_labels; > 10 MiB when oversize."""
    width, height = rng.choice(IMAGE_SIZES)
    labels = params["objects_to_annotate"] if params.get("with_labels") else None
    if not oversize:
        return {"annotations": [_box(rng, width, height, labels) for _ in range(rng.randint(1, 6))]}
    boxes = []
    size = 0
    while size < defaults.OVERSIZE_BYTES:
        box = _box(rng, width, height, labels)
        size += _json_size_at_least(box)
        boxes.append(box)
    return {"annotations": boxes}


def _json_size_at_least(box: dict[str, Any]) -> int:
    """A lower bound of len(json.dumps(box)) + the list separator, without serializing 150k boxes."""
    digits = sum(len(str(box[key])) for key in ("left", "top", "width", "height"))
    label = len(box["label"]) + 13 if "label" in box else 0
    return 42 + digits + label + 2


def audiotranscription(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A transcript (with fillers when verbatim) and the audio's duration in seconds."""
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 24))]
    if params.get("verbatim"):
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(_FILLERS))
    transcript = " ".join(words)
    return {
        "transcript": transcript[0].upper() + transcript[1:] + ".",
        "duration": round(rng.uniform(2, 60), 6),
    }


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _leaf_labels(labels: list[Any]) -> list[str]:
    """The labels an annotation can carry: strings, and a LabelDescription's subchoices (or its choice)."""
    leaves: list[str] = []
    for label in labels:
        if isinstance(label, str):
            leaves.append(label)
        elif label.get("subchoices"):
            leaves.extend(_leaf_labels(label["subchoices"]))
        else:
            leaves.append(label["choice"])
    return leaves


def _choice_value(choice: Any) -> Any:
    return choice.get("value", choice.get("label")) if isinstance(choice, dict) else choice


def _attributes(specs: dict[str, Any] | None, rng: random.Random) -> dict[str, Any]:
    """A value per annotation attribute: a choice, a number, a short text or an angle (linked ones left out)."""
    values: dict[str, Any] = {}
    for key, spec in (specs or {}).items():
        kind = spec.get("type", "category")
        if kind == "category":
            values[key] = _choice_value(rng.choice(spec["choices"]))
        elif kind == "number":
            values[key] = rng.randint(0, 10)
        elif kind == "text":
            values[key] = _text(rng, 2)
        elif kind == "angle":
            values[key] = rng.randint(0, 359)
    return values


def _xy(rng: random.Random, width: int, height: int) -> dict[str, int]:
    return {"x": rng.randint(0, width - 1), "y": rng.randint(0, height - 1)}


def _ellipse(rng: random.Random, width: int, height: int) -> dict[str, Any]:
    rx, ry = rng.randint(4, width // 8), rng.randint(4, height // 8)
    cx, cy = rng.randint(rx, width - rx), rng.randint(ry, height - ry)
    extremes = ((cx, cy - ry), (cx + rx, cy), (cx, cy + ry), (cx - rx, cy))
    return {"vertices": [{"x": x, "y": y} for x, y in extremes]}


_CUBOID_VERTICES = (
    "face-topleft", "face-bottomleft", "face-topright", "face-bottomright", "side-topcorner", "side-bottomcorner",
)  # fmt: skip


def _cuboid(rng: random.Random, width: int, height: int) -> dict[str, Any]:
    box = _box(rng, width, height, None)
    left, top, right, bottom = box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"]
    depth = min(rng.randint(4, 40), width - right) if right < width else 0
    side = right + depth
    corners = ((left, top), (left, bottom), (right, top), (right, bottom), (side, top), (side, bottom))
    return {
        "vertices": [
            {"type": "vertex", "description": name, "x": x, "y": y}
            for name, (x, y) in zip(_CUBOID_VERTICES, corners, strict=True)
        ]
    }


_GEOMETRY: dict[str, Callable[[random.Random, int, int], dict[str, Any]]] = {
    "box": lambda rng, w, h: _box(rng, w, h, None),
    "polygon": lambda rng, w, h: {"vertices": [_xy(rng, w, h) for _ in range(rng.randint(3, 6))]},
    "line": lambda rng, w, h: {"vertices": [_xy(rng, w, h) for _ in range(rng.randint(2, 5))]},
    "point": _xy,
    "cuboid": _cuboid,
    "ellipse": _ellipse,
}


def imageannotation(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """1-3 annotations per requested geometry, each typed, labelled, with a uuid and its attributes."""
    width, height = rng.choice(IMAGE_SIZES)
    annotations = []
    for kind, spec in params["geometries"].items():
        labels = _leaf_labels(spec["objects_to_annotate"])
        for _ in range(rng.randint(1, 3)):
            annotation = {
                "type": kind,
                "label": rng.choice(labels),
                "uuid": _uuid(rng),
                "attributes": _attributes(params.get("annotation_attributes"), rng),
            }
            annotation.update(_GEOMETRY[kind](rng, width, height))
            annotations.append(annotation)
    return {"annotations": annotations, "global_attributes": {}}


def textcollection(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A value for every field, keyed by field_id: text, a number, chosen categories, a date or a boolean."""
    annotations: dict[str, Any] = {}
    for spec in params["fields"]:
        kind = spec["type"]
        if kind == "number":
            value: Any = rng.randint(0, 1000)
        elif kind == "category":
            value = [_choice_value(rng.choice(spec["choices"]))]
        elif kind == "datetime":
            value = f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        elif kind == "boolean":
            value = rng.random() < 0.5
        else:
            value = _text(rng, 3)
        annotations[spec["field_id"]] = value
    return {"annotations": annotations}


def namedentityrecognition(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Spans of the text's own words with a label each (offsets into `text`), and relationships between them."""
    text: str = params["text"]
    words = [match for match in re.finditer(r"\S+", text)]
    picked = sorted(rng.sample(words, min(len(words), rng.randint(1, 3))), key=lambda m: m.start())
    labels = [label["name"] for label in params["labels"]]
    annotations = [
        {"id": _uuid(rng), "start": m.start(), "end": m.end(), "text": m.group(0), "label": rng.choice(labels)}
        for m in picked
    ]
    relationships = []
    if params.get("relationships") and len(annotations) >= 2:
        relationships.append(
            {
                "id": _uuid(rng),
                "source_ref": annotations[0]["id"],
                "target_ref": annotations[1]["id"],
                "name": rng.choice(params["relationships"])["name"],
            }
        )
    return {"annotations": annotations, "relationships": relationships}


def documenttranscription(params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """1-4 transcribed regions: uuid, page, label (from `features`), text and a box location."""
    labels = [feature["label"] for feature in params.get("features", [])] or ["text"]
    annotations = []
    for _ in range(rng.randint(1, 4)):
        box = _box(rng, 1224, 1584, None)  # a letter page at 144 dpi
        annotations.append(
            {
                "uuid": _uuid(rng),
                "page": rng.randint(1, 2),
                "label": rng.choice(labels),
                "text": _text(rng, 3),
                "location": {"type": "box", **box},
                "refs": [],
            }
        )
    return {"annotations": annotations}


def file_result(task: dict[str, Any]) -> dict[str, Any]:
    """video and lidar: the result is a file, so the response only says where (`events` for playback too)."""
    base = f"{RESULT_BASE}/{task['task_id']}"
    response: dict[str, Any] = {"annotations": {"url": f"{base}/annotations.json"}}
    if task["type"] == "videoplaybackannotation":
        response["events"] = {"url": f"{base}/events.json"}
    return response


def attachment_urls(task: dict[str, Any]) -> list[str]:
    """The task's attachments: `attachment`, and `attachments` (strings, or objects' `content`)."""
    params = task.get("params", {})
    urls = [params["attachment"]] if isinstance(params.get("attachment"), str) else []
    for item in params.get("attachments") or []:
        if isinstance(item, str):
            urls.append(item)
        elif isinstance(item, dict) and isinstance(item.get("content"), str):
            urls.append(item["content"])
    return urls


def fails_at_creation(task: dict[str, Any]) -> bool:
    """True when an attachment URL asks for an error at creation (it contains ``sim-error``)."""
    return any(SIM_ERROR_MARK in url for url in attachment_urls(task))


def error_response(task: dict[str, Any], message: str | None = None) -> dict[str, Any]:
    """The documented error-at-creation response: the message, and the attachments (or frames) that failed."""
    urls = attachment_urls(task)
    failed = [url for url in urls if SIM_ERROR_MARK in url] or urls
    key = "frames" if task["type"] in FRAME_TYPES else "attachments"
    return {"error": message or ERROR_MESSAGE, key: [{"statusCode": 403, "url": url} for url in failed]}


_GENERATORS: dict[str, Callable[[dict[str, Any], random.Random], dict[str, Any]]] = {
    "categorization": categorization,
    "transcription": fields_only,
    "datacollection": fields_only,
    "phonecall": phonecall,
    "comparison": comparison,
    "audiotranscription": audiotranscription,
    "imageannotation": imageannotation,
    "textcollection": textcollection,
    "namedentityrecognition": namedentityrecognition,
    "documenttranscription": documenttranscription,
}


def generate_response(task: dict[str, Any], seed: int, *, oversize: bool = False, salt: str = "") -> dict[str, Any]:
    """A response for `task` (a task object), reproducible from `seed`, its task_id and `salt`.

    A salt gives another answer of the same shape (a fixed audit's new response).
    """
    rng = rng_for(seed, task["task_id"], salt)
    if task["type"] == "annotation":
        return annotation(task["params"], rng, oversize=oversize)
    if task["type"] in SIM_FILE_RESULT_TYPES:
        return file_result(task)
    return _GENERATORS[task["type"]](task["params"], rng)

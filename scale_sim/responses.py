"""Made-up responses for completed tasks, valid for each type and its params, reproducible from a seed.

Like Scale's test mode, the answers are not true; they only have the documented shape, so a
receiver can be exercised end to end. The same seed and task id always give the same response.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from scale_sim import defaults

IMAGE_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720), (1920, 1080))
"""Plausible image sizes the boxes of an annotation response fit inside."""

PHONECALL_OUTCOMES = ("no_pickup", "hung_up", "success")
"""Documented phonecall outcomes."""

_WORDS = (
    "the avocado is a pear shaped fruit with leathery skin smooth edible flesh and a large stone "
    "scale sends a callback when the task is complete so the receiver can store the answer"
).split()
_FILLERS = ("um", "hm", "uh")


def rng_for(seed: int, task_id: str) -> random.Random:
    """The generator for one task: seeded by SCALE_SIM_SEED and the task id (string seeds are stable)."""
    return random.Random(f"{seed}:{task_id}")


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


_GENERATORS: dict[str, Callable[[dict[str, Any], random.Random], dict[str, Any]]] = {
    "categorization": categorization,
    "transcription": fields_only,
    "datacollection": fields_only,
    "phonecall": phonecall,
    "comparison": comparison,
    "audiotranscription": audiotranscription,
}


def generate_response(task: dict[str, Any], seed: int, *, oversize: bool = False) -> dict[str, Any]:
    """A response for `task` (a task object), reproducible from `seed` and its task_id."""
    rng = rng_for(seed, task["task_id"])
    if task["type"] == "annotation":
        return annotation(task["params"], rng, oversize=oversize)
    return _GENERATORS[task["type"]](task["params"], rng)

"""Task objects as the reference shows them: ids, timestamps and the attribute layout."""

from __future__ import annotations

import itertools
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from scale_sim.validation import TaskSpec

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_process_random = secrets.token_bytes(5)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

STATUSES = ("pending", "completed", "canceled")
"""Documented task statuses."""


def now_ms() -> int:
    """The current wall-clock time in whole milliseconds, the resolution of created_at."""
    return time.time_ns() // 1_000_000


def new_task_id(created_ms: int) -> str:
    """A 24-hex id shaped like Scale's (a MongoDB ObjectId: seconds, process random, counter)."""
    seconds = (created_ms // 1000) & 0xFFFFFFFF
    count = next(_counter) & 0xFFFFFF
    return (seconds.to_bytes(4, "big") + _process_random + count.to_bytes(3, "big")).hex()


def iso_ms(ms: int) -> str:
    """``2016-06-23T09:09:34.752Z``: UTC, milliseconds, Z."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_timestamp(value: str) -> int:
    """An ISO 8601 date or date-time (naive means UTC) in milliseconds; ValueError when malformed."""
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def build_task(spec: TaskSpec, task_id: str, created_ms: int, *, is_test: bool) -> dict[str, Any]:
    """The attributes fixed at creation, laid out as in the reference's examples."""
    task: dict[str, Any] = {
        "task_id": task_id,
        "created_at": iso_ms(created_ms),
        "callback_url": spec.callback_url,
        "type": spec.type,
    }
    if spec.instruction is not None:
        task["instruction"] = spec.instruction
    if "script" in spec.extra:
        task["script"] = spec.extra["script"]
    task["urgency"] = spec.urgency
    task["params"] = spec.params
    task["metadata"] = spec.metadata
    if is_test:
        task["is_test"] = True
    for name in ("project", "batch"):
        if name in spec.extra:
            task[name] = spec.extra[name]
    return task


def task_view(
    body: dict[str, Any],
    *,
    status: str,
    completed_at: str | None = None,
    response: dict[str, Any] | None = None,
    callback_succeeded: bool | None = None,
) -> dict[str, Any]:
    """The task object as the API answers it: creation attributes plus status and outcome."""
    task: dict[str, Any] = {}
    for key, value in body.items():
        task[key] = value
        if key == "type":
            task["status"] = status
    if completed_at is not None:
        task["completed_at"] = completed_at
    if response is not None:
        task["response"] = response
    if callback_succeeded is not None:
        task["callback_succeeded"] = callback_succeeded
    return task

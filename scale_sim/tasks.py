"""Task objects as the reference shows them: ids, timestamps and the attribute layout."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from scale_sim.validation import TaskSpec

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_process_random = secrets.token_bytes(5)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

STATUSES = ("pending", "completed", "canceled", "error")
"""Task statuses: the three the 2016 text documents, and today's `error` (an attachment could not be fetched)."""

REVIEW_STATUSES = ("accepted", "fixed", "rejected", "commented", "pending")
"""Values of `customer_review_status` a list query may ask for (an audit's result, or Scale's `pending`)."""

AUDIT_RESULTS = ("accepted", "fixed", "rejected", "commented")
"""An audit's `audit_result`, which also becomes the task's `customer_review_status`."""

AUDIT_SOURCES = ("customer", "scale")
"""Who audited: an `audit_source`."""


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


def timestamp_ms(value: str) -> int:
    """An ISO 8601 date or date-time (naive means UTC) in milliseconds; ValueError when malformed."""
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def new_task_object(spec: TaskSpec, task_id: str, created_ms: int, *, is_test: bool) -> dict[str, Any]:
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
    task["is_test"] = is_test
    task["project"] = spec.extra.get("project")
    task["batch"] = spec.extra.get("batch")
    task["unique_id"] = spec.extra.get("unique_id")
    task["tags"] = list(spec.extra.get("tags", []))
    return task


TODAY_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("is_test", False),
    ("project", None),
    ("batch", None),
    ("unique_id", None),
)
"""Attributes every task object carries today, with the value a task stored before they existed gets."""


def task_view(
    body: dict[str, Any],
    *,
    status: str,
    updated_at: str | None = None,
    completed_at: str | None = None,
    response: dict[str, Any] | None = None,
    audits: list[dict[str, Any]] | None = None,
    customer_review_status: str | None = None,
    callback_succeeded: bool | None = None,
    recalled: bool = False,
) -> dict[str, Any]:
    """The task object as the API answers it: creation attributes plus status, outcome and review state.

    Today's attributes are always present (null or empty when unset), also for a task stored
    before they existed; `callback_succeeded` keeps its 2016 meaning (absent until known), while
    `callback_completed` is always a boolean. A recalled task shows `response: null`.
    """
    task: dict[str, Any] = {}
    for key, value in body.items():
        task[key] = value
        if key == "type":
            task["status"] = status
    for key, default in TODAY_DEFAULTS:
        task.setdefault(key, default)
    task["tags"] = list(task.get("tags") or [])
    task["updated_at"] = updated_at if updated_at is not None else task["created_at"]
    if completed_at is not None:
        task["completed_at"] = completed_at
    if response is not None:
        task["response"] = response
    elif recalled:
        task["response"] = None
    task["audits"] = list(audits or [])
    task["customer_review_status"] = customer_review_status
    task["callback_completed"] = bool(callback_succeeded)
    if callback_succeeded is not None:
        task["callback_succeeded"] = callback_succeeded
    return task


def callback_body(task: dict[str, Any]) -> bytes:
    """``{"task_id", "status", "response", "task"}``: today's envelope (the 2016 one plus a top-level status).

    `response` is the task's (null for a recalled task), so body and task never disagree.
    """
    envelope = {
        "task_id": task["task_id"],
        "status": task.get("status"),
        "response": task.get("response"),
        "task": task,
    }
    return json.dumps(envelope).encode()

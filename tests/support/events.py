"""Task events as callback bodies: a task's life (completed, audited, recalled, completed again), an
error at creation, and the contract every event's body keeps."""

from __future__ import annotations

import copy
import re
from typing import Any

from tests.support.fixtures import load_fixture

COMPLETED_AT = "2016-06-23T21:54:44.904Z"
RECOMPLETED_AT = "2016-06-26T09:00:00.000Z"


def _audit(result: str, at: str) -> dict[str, Any]:
    return {
        "audited_by": "reviewer@example.com",
        "audited_at": at,
        "audit_time_secs": 12,
        "audit_result": result,
        "audit_source": "customer",
    }


def callback(task: dict[str, Any], **top: Any) -> dict[str, Any]:
    """The callback body Scale sends for a task in its current state (top-level status included)."""
    return {"task_id": task["task_id"], "status": task["status"], "response": task.get("response"), "task": task, **top}


def categorization_life() -> list[tuple[str, dict[str, Any]]]:
    """Six deliveries of one categorization task, each a new event, named by what happened."""
    base = load_fixture("categorization")["task"]
    task = copy.deepcopy(base)
    task.update(updated_at=COMPLETED_AT, audits=[], customer_review_status=None, project="kitchen", tags=["a"])
    life = [("completed", callback(copy.deepcopy(task)))]
    task["audits"] = [_audit("accepted", "2016-06-24T08:00:00.000Z")]
    task.update(customer_review_status="accepted", updated_at="2016-06-24T08:00:00.000Z")
    life.append(("audit accepted", callback(copy.deepcopy(task))))
    task["audits"] = [*task["audits"], _audit("fixed", "2016-06-24T09:00:00.000Z")]
    task.update(customer_review_status="fixed", updated_at="2016-06-24T09:00:00.000Z", response={"category": "blue"})
    life.append(("audit fixed", callback(copy.deepcopy(task))))
    task["audits"] = [*task["audits"], _audit("rejected", "2016-06-24T10:00:00.000Z")]
    task.update(customer_review_status="rejected", updated_at="2016-06-24T10:00:00.000Z")
    life.append(("audit rejected", callback(copy.deepcopy(task))))
    task.update(status="pending", response=None, updated_at="2016-06-25T10:00:00.000Z")
    life.append(("recalled", callback(copy.deepcopy(task))))
    task.update(status="completed", response={"category": "red"}, completed_at=RECOMPLETED_AT)
    task["updated_at"] = RECOMPLETED_AT
    life.append(("completed again", callback(copy.deepcopy(task))))
    return life


ATTACHMENT_ERROR = {
    "error": "One or more attachments could not be downloaded.",
    "attachments": [{"statusCode": 403, "url": "https://example.com/private.png"}],
}
"""The documented response of an error at creation."""


def error_callback(name: str = "categorization") -> dict[str, Any]:
    """An error at creation: the attachment could not be fetched."""
    task = copy.deepcopy(load_fixture(name)["task"])
    task.update(
        status="error",
        completed_at=None,
        response=copy.deepcopy(ATTACHMENT_ERROR),
    )
    return callback(task)


ISO_MS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
"""Timestamps as the contract writes them: UTC, milliseconds, Z."""

TODAY_FIELDS = (
    "updated_at", "project", "batch", "unique_id", "tags", "audits", "customer_review_status", "is_test",
    "callback_completed",
)  # fmt: skip
"""What every task object carries today (/tmp/team/events-contract.md)."""


def assert_event_body(body: dict[str, Any], event: str) -> None:
    """Check a callback body against the receiver's contract for `event`.

    `event` is completed, error, audit_accepted|fixed|rejected|commented, or recalled.
    """
    task = body["task"]
    assert list(body) == ["task_id", "status", "response", "task"]
    assert body["task_id"] == task["task_id"]
    assert body["status"] == task["status"]
    assert body["response"] == task.get("response")
    for name in TODAY_FIELDS:
        assert name in task, name
    assert isinstance(task["tags"], list) and isinstance(task["audits"], list)
    assert isinstance(task["callback_completed"], bool)
    for name in ("created_at", "updated_at", "completed_at"):
        if task.get(name) is not None:
            assert re.match(ISO_MS, task[name]), (name, task[name])
    for audit in task["audits"]:
        assert set(audit) == {"audited_by", "audited_at", "audit_time_secs", "audit_result", "audit_source"}
        assert "@" in audit["audited_by"] and re.match(ISO_MS, audit["audited_at"])
        assert audit["audit_result"] in ("accepted", "fixed", "rejected", "commented")
        assert audit["audit_source"] in ("customer", "scale")
    assert task["updated_at"] >= task["created_at"]
    if event == "completed":
        assert task["status"] == "completed" and isinstance(body["response"], dict) and task["completed_at"]
        assert all(a["audited_at"] < task["completed_at"] for a in task["audits"])
    elif event == "error":
        assert task["status"] == "error" and task.get("completed_at") is None
        response = body["response"]
        assert isinstance(response["error"], str) and response["error"]
        [key] = set(response) - {"error"}
        assert key in ("attachments", "frames")
        assert response[key] and all(set(item) == {"statusCode", "url"} for item in response[key])
        assert task["audits"] == [] and task["customer_review_status"] is None
    elif event.startswith("audit_"):
        result = event.removeprefix("audit_")
        assert task["status"] == "completed" and isinstance(body["response"], dict)
        newest = task["audits"][-1]
        assert newest["audit_result"] == result == task["customer_review_status"]
        assert newest["audited_at"] >= task["completed_at"]
        assert task["updated_at"] == newest["audited_at"]
    elif event == "recalled":
        assert task["status"] == "pending" and body["response"] is None and task["response"] is None
        assert task["completed_at"] and task["updated_at"] > task["completed_at"]
    else:
        raise AssertionError(f"unknown event {event}")

"""A task's life as callback bodies: completed, audited, recalled, completed again (tests only)."""

from __future__ import annotations

import copy
from typing import Any

from tests.conftest import load_fixture

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

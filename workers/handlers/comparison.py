"""Example: log the result of a comparison."""

import logging

from workers import handles
from workers.payloads import ComparisonTask

log = logging.getLogger(__name__)


@handles("comparison")
def log_comparison(task: ComparisonTask) -> None:
    """One line: the choice and the recorded field names, over how many attachments."""
    attachments = len(task.params.get("attachments") or [])
    fields = ", ".join(sorted(task.response.fields or {})) or "none"
    log.info("comparison %s of %d attachments: choice=%s fields=%s", task.task_id, attachments,
             task.response.choice, fields,
             extra={"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id})

"""Example: log the result of a comparison."""

import logging

from workers import handles
from workers.handlers._format import count, names
from workers.payloads import ComparisonTask

log = logging.getLogger(__name__)


@handles("comparison")
def log_comparison(task: ComparisonTask) -> None:
    """One line: the choice and the recorded field names, over how many attachments."""
    extra = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id}
    # params are not validated: attachments may be a list, one value, or anything else.
    attachments = count(task.params.get("attachments"))
    if task.response is None:  # an error, recall or cancellation: no result to summarize
        log.info("comparison %s of %d attachments: %s", task.task_id, attachments, task.event, extra=extra)
        return
    fields = task.response.fields
    log.info(
        "comparison %s of %d attachments: choice=%s fields=%s",
        task.task_id,
        attachments,
        task.response.choice,
        names(fields if isinstance(fields, dict) else ()),
        extra=extra,
    )

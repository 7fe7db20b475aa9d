"""Example: log which category a categorization task got."""

import logging

from workers import handles
from workers.payloads import CategorizationTask

log = logging.getLogger(__name__)


@handles("categorization")
def log_categorization(task: CategorizationTask) -> None:
    """One line: the chosen categories (and ids)."""
    extra = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id}
    if task.response is None:  # an error, recall or cancellation event: no answer
        log.info("categorization %s: %s", task.task_id, task.event, extra=extra)
        return
    ids = f" ids={task.response.category_id}" if task.response.category_id is not None else ""
    log.info("categorization %s: %s%s", task.task_id, ", ".join(map(str, task.response.categories)), ids, extra=extra)

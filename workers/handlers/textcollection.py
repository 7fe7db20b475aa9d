"""Example: log which fields a text collection filled."""

import logging

from workers import handles
from workers.handlers._format import names
from workers.payloads import TextcollectionTask

log = logging.getLogger(__name__)


@handles("textcollection")
def log_textcollection(task: TextcollectionTask) -> None:
    """One line: the field ids answered (their values may be personal data: not logged)."""
    extra = {"task_id": task.task_id, "type": task.type, "event": task.event, "delivery_id": task.delivery_id}
    if task.response is None:
        log.info("textcollection %s: %s", task.task_id, task.event, extra=extra)
        return
    fields = task.response.annotations
    log.info("textcollection %s: %d fields (%s)", task.task_id, len(fields), names(fields), extra=extra)

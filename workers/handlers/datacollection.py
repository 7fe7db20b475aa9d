"""Example: log which fields a data collection found."""

import logging

from workers import handles
from workers.handlers._format import names
from workers.payloads import DatacollectionTask

log = logging.getLogger(__name__)


@handles("datacollection")
def log_datacollection(task: DatacollectionTask) -> None:
    """One line: the collected field names and how many were found."""
    extra = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id}
    if task.response is None:  # an error, recall or cancellation event: nothing collected
        log.info("datacollection %s: %s", task.task_id, task.event, extra=extra)
        return
    fields = task.response.fields
    found = sum(1 for value in fields.values() if value not in ("", None))
    log.info(
        "datacollection %s: %d of %d fields found (%s)", task.task_id, found, len(fields), names(fields), extra=extra
    )

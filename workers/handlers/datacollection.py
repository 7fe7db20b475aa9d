"""Example: log which fields a data collection found."""

import logging

from workers import handles
from workers.payloads import DatacollectionTask

log = logging.getLogger(__name__)


@handles("datacollection")
def log_datacollection(task: DatacollectionTask) -> None:
    """One line: the collected field names and how many were found."""
    fields = task.response.fields
    found = sum(1 for value in fields.values() if value not in ("", None))
    log.info("datacollection %s: %d of %d fields found (%s)", task.task_id, found, len(fields),
             ", ".join(sorted(fields)), extra={"task_id": task.task_id, "type": task.type,
                                                "delivery_id": task.delivery_id})

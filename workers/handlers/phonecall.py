"""Example: log how a phone call went."""

import logging

from workers import handles
from workers.payloads import PhonecallTask

log = logging.getLogger(__name__)


@handles("phonecall")
def log_phonecall(task: PhonecallTask) -> None:
    """One line: the outcome, the choice and the recorded field names."""
    response = task.response
    fields = ", ".join(sorted(response.fields or {})) or "none"
    log.info("phonecall %s: outcome=%s choice=%s fields=%s", task.task_id, response.outcome, response.choice, fields,
             extra={"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id})

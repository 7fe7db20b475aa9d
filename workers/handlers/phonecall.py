"""Example: log how a phone call went."""

import logging

from workers import handles
from workers.handlers._format import names
from workers.payloads import PhonecallTask

log = logging.getLogger(__name__)


@handles("phonecall")
def log_phonecall(task: PhonecallTask) -> None:
    """One line: the outcome, the choice and the recorded field names."""
    response = task.response
    extra = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id}
    if response is None:  # an error, recall or cancellation event: no call result
        log.info("phonecall %s: %s", task.task_id, task.event, extra=extra)
        return
    fields = names(response.fields if isinstance(response.fields, dict) else ())
    log.info(
        "phonecall %s: outcome=%s choice=%s fields=%s",
        task.task_id,
        response.outcome,
        response.choice,
        fields,
        extra=extra,
    )

"""Example: log which fields a transcription filled in."""

import logging

from workers import handles
from workers.handlers._format import names
from workers.payloads import TranscriptionTask

log = logging.getLogger(__name__)


@handles("transcription")
def log_transcription(task: TranscriptionTask) -> None:
    """One line: the transcribed field names and how many are empty."""
    extra = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id}
    if task.response is None:  # an error, recall or cancellation event: nothing transcribed
        log.info("transcription %s: %s", task.task_id, task.event, extra=extra)
        return
    fields = task.response.fields
    empty = sum(1 for value in fields.values() if value in ("", None))
    log.info("transcription %s: %d fields (%s), %d empty", task.task_id, len(fields), names(fields), empty, extra=extra)

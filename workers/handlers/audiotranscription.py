"""Example: log an audio transcription's length, or its error."""

import logging

from workers import handles
from workers.handlers._format import seconds
from workers.payloads import AudiotranscriptionTask

log = logging.getLogger(__name__)


@handles("audiotranscription")
def log_audiotranscription(task: AudiotranscriptionTask) -> None:
    """One line: words and seconds transcribed, or Scale's error."""
    response = task.response
    extra = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id}
    if response is None:  # an error, recall or cancellation event: no result to summarize
        log.info("audiotranscription %s: %s", task.task_id, task.event, extra=extra)
        return
    if not response.ok:
        partial = len((response.transcript or "").split())
        log.warning(
            "audiotranscription %s failed: %s (%d words partial)", task.task_id, response.error, partial, extra=extra
        )
        return
    words = len((response.transcript or "").split())
    # A valid number can still be too big for %f (an int past float's range): format it ourselves.
    log.info("audiotranscription %s: %d words over %s", task.task_id, words, seconds(response.duration), extra=extra)

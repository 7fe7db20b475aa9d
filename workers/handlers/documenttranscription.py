"""Example: log how many fields a document transcription read, on how many pages."""

import logging

from workers import handles
from workers.handlers._format import names
from workers.payloads import DocumentTranscriptionTask

log = logging.getLogger(__name__)


@handles("documenttranscription")
def log_documenttranscription(task: DocumentTranscriptionTask) -> None:
    """One line: the number of fields, the pages they are on, and their labels (not the text)."""
    extra = {"task_id": task.task_id, "type": task.type, "event": task.event, "delivery_id": task.delivery_id}
    if task.response is None:
        log.info("documenttranscription %s: %s", task.task_id, task.event, extra=extra)
        return
    fields = task.response.annotations
    pages = {field.page for field in fields if field.page is not None}
    log.info(
        "documenttranscription %s: %d fields on %d pages (%s)",
        task.task_id,
        len(fields),
        len(pages),
        names({field.label or "unlabelled" for field in fields}),
        extra=extra,
    )

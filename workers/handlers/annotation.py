"""Example: log how many boxes an annotation drew, per label."""

import logging
from collections import Counter

from workers import handles
from workers.handlers._format import names
from workers.payloads import AnnotationTask

log = logging.getLogger(__name__)


@handles("annotation")
def log_annotation(task: AnnotationTask) -> None:
    """One line: the number of boxes and their labels."""
    extra = {"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id}
    if task.response is None:  # an error, recall or cancellation event: no boxes
        log.info("annotation %s: %s", task.task_id, task.event, extra=extra)
        return
    boxes = task.response.annotations
    labels = Counter(str(box.label) if box.label else "unlabelled" for box in boxes)
    summary = names(f"{label}={n}" for label, n in labels.items()) if labels else "no boxes"
    log.info("annotation %s: %d boxes (%s)", task.task_id, len(boxes), summary, extra=extra)

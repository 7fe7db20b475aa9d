"""Example: log how many boxes an annotation drew, per label."""

import logging
from collections import Counter

from workers import handles
from workers.payloads import AnnotationTask

log = logging.getLogger(__name__)


@handles("annotation")
def log_annotation(task: AnnotationTask) -> None:
    """One line: the number of boxes and their labels."""
    boxes = task.response.annotations
    labels = Counter(box.label or "unlabelled" for box in boxes)
    summary = ", ".join(f"{label}={count}" for label, count in sorted(labels.items())) or "no boxes"
    log.info("annotation %s: %d boxes (%s)", task.task_id, len(boxes), summary,
             extra={"task_id": task.task_id, "type": task.type, "delivery_id": task.delivery_id})

"""Example: log an imageannotation's shapes by geometry and label; and, for an error, what Scale could not fetch."""

import logging
from collections import Counter

from workers import handles
from workers.handlers._format import host, names
from workers.payloads import ImageannotationTask

log = logging.getLogger(__name__)


@handles("imageannotation")  # results: completions and fixed audits
def log_imageannotation(task: ImageannotationTask) -> None:
    """One line: how many shapes of each geometry (box, polygon, ...) and their labels."""
    extra = {"task_id": task.task_id, "type": task.type, "event": task.event, "delivery_id": task.delivery_id}
    if task.response is None:  # not a result (a handler of results gets none, but a copy may ask for more)
        log.info("imageannotation %s: %s", task.task_id, task.event, extra=extra)
        return
    shapes = task.response.annotations
    geometries = Counter(shape.type for shape in shapes)
    labels = Counter(shape.label or "unlabelled" for shape in shapes)
    log.info(
        "imageannotation %s: %d shapes (%s) labelled %s",
        task.task_id,
        len(shapes),
        names(f"{kind}={n}" for kind, n in geometries.items()),
        names(f"{label}={n}" for label, n in labels.items()),
        extra=extra,
    )


@handles("imageannotation", events={"error"})  # Scale could not fetch or read the image
def log_imageannotation_error(task: ImageannotationTask) -> None:
    """One line: Scale's message and each attachment's host and HTTP status (never the URL: it may be signed)."""
    extra = {"task_id": task.task_id, "type": task.type, "event": task.event, "delivery_id": task.delivery_id}
    error = task.error
    if error is None:
        log.warning("imageannotation %s: %s without details", task.task_id, task.event, extra=extra)
        return
    attachments = names(f"{host(a.url)} answered {a.status_code}" for a in error.attachments)
    log.warning(
        "imageannotation %s could not be created: %s; attachments: %s",
        task.task_id,
        error.message,
        attachments,
        extra=extra,
    )

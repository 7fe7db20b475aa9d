"""Example: log the entities a named entity recognition found, by label, and its relationships."""

import logging
from collections import Counter

from workers import handles
from workers.handlers._format import names
from workers.payloads import NamedEntityRecognitionTask

log = logging.getLogger(__name__)


@handles("namedentityrecognition")
def log_namedentityrecognition(task: NamedEntityRecognitionTask) -> None:
    """One line: entities per label and relationships per name (not the text itself)."""
    extra = {"task_id": task.task_id, "type": task.type, "event": task.event, "delivery_id": task.delivery_id}
    if task.response is None:
        log.info("namedentityrecognition %s: %s", task.task_id, task.event, extra=extra)
        return
    entities = Counter(entity.label or "unlabelled" for entity in task.response.annotations)
    links = Counter(link.name or "unnamed" for link in task.response.relationships)
    log.info(
        "namedentityrecognition %s: %d entities (%s), %d relationships (%s)",
        task.task_id,
        len(task.response.annotations),
        names(f"{label}={n}" for label, n in entities.items()),
        len(task.response.relationships),
        names(f"{name}={n}" for name, n in links.items()),
        extra=extra,
    )

"""Processing queued Scale callbacks: plug in a handler with ``@handles("annotation")``.

from workers import handles
from workers.payloads import AnnotationTask

@handles("annotation")
def store_boxes(task: AnnotationTask) -> None:
    ...
"""

from workers.registry import registry

handles = registry.handles
"""Register a function for a task type (``"*"`` for every type); see :class:`HandlerRegistry`."""

__all__ = ["handles", "registry"]

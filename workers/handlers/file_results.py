"""Example: video and lidar results are files; log where each one is (to download it, a handler of yours would)."""

import logging

from workers import handles
from workers.handlers._format import host
from workers.payloads import FileResultTask

log = logging.getLogger(__name__)


@handles("videoannotation")
@handles("videoplaybackannotation")
@handles("lidarannotation")
def log_file_result(task: FileResultTask) -> None:
    """One line: the result file's host, and the events file's for video playback (never the URL: it may be signed)."""
    extra = {"task_id": task.task_id, "type": task.type, "event": task.event, "delivery_id": task.delivery_id}
    if task.response is None:
        log.info("%s %s: %s", task.type, task.task_id, task.event, extra=extra)
        return
    events = f", events file on {host(task.response.events_url)}" if task.response.events_url else ""
    log.info("%s %s: result file on %s%s", task.type, task.task_id, host(task.response.result_url), events, extra=extra)

"""Structured logging: one line per event, ``key=value`` fields, never a key or a body.

Fields are passed with ``extra={...}``; only the names in :data:`FIELDS` are printed, so a
payload handed to ``extra`` by mistake still never reaches the log.
"""

from __future__ import annotations

import logging
import sys
import time

FIELDS = (
    "task_id",
    "type",
    "event",
    "delivery_id",
    "mode",
    "source",
    "outcome",
    "status",
    "latency_ms",
    "wait_s",
    "handler",
    "attempt",
    "quarantine_id",
    "reason",
    "error",
    "window",
    "count",
)
"""The structured fields a log line may carry, in print order."""


class KeyValueFormatter(logging.Formatter):
    """``time level logger message k=v ...`` in UTC, Heroku-log friendly, cheap on the ack path.

    It runs once per callback, so the timestamp is formatted once per second, not per line.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line = f"{self._stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name} {record.getMessage()}"
        fields = record.__dict__
        for name in FIELDS:
            value = fields.get(name)
            if value is not None:
                text = str(value)
                line += f" {name}={text!r}" if (" " in text or not text) else f" {name}={text}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


def configure_logging(level: int = logging.INFO) -> None:
    """Send this project's logs to stderr, one structured line each (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, KeyValueFormatter) for h in root.handlers):
        return
    # The logging HOWTO's optimisations: the line prints none of these, and every callback
    # logs once, so collecting them (a stack walk for the caller) is wasted CPU.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(level)

"""Structured logging: one line per event, ``key=value`` fields, never a key or a body.

Fields are passed with ``extra={...}``; only the names in :data:`FIELDS` are printed, so a
payload handed to ``extra`` by mistake still never reaches the log.
"""

from __future__ import annotations

import logging
import sys

FIELDS = (
    "task_id",
    "type",
    "delivery_id",
    "mode",
    "source",
    "outcome",
    "status",
    "latency_ms",
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
    """``time level logger message k=v ...``, Heroku-log friendly."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = []
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                text = str(value)
                pairs.append(f"{name}={text!r}" if (" " in text or not text) else f"{name}={text}")
        return f"{line} {' '.join(pairs)}" if pairs else line


def configure_logging(level: int = logging.INFO) -> None:
    """Send this project's logs to stderr, one structured line each (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, KeyValueFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)

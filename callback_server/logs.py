"""Structured logging: one line per record, in one format for every process, never a key or a body.

Every process (gunicorn's master and workers, ``python -m workers`` and RQ's own lines, the
clock, the simulator) prints through :func:`configure_logging`, in logfmt::

    time=2026-11-28T10:00:00.123Z level=info logger=callback_server.web.ingest msg="callback queued" task_id=t1 ...

or, with ``LOG_FORMAT=json``, one JSON object per line for drains that want JSON.

Fields are passed with ``extra={...}``; only the names in :data:`FIELDS` are printed, so a
payload handed to ``extra`` by mistake still never reaches the log. Every value is escaped
(quotes, backslashes, newlines, ``=``, control and other unprintable characters, lone
surrogates), so a sender-chosen ``task_id`` cannot split a line or forge a field; a traceback
is one escaped ``exc`` field, so a record is always exactly one line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

from callback_server import defaults
from callback_server.render import escape_unprintable

FIELDS = (
    "request_id",
    "task_id",
    "type",
    "event",
    "events",
    "delivery_id",
    "run_id",
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

LOGFMT, JSON = defaults.LOG_FORMATS
"""The values of LOG_FORMAT."""

_NEEDS_QUOTES = re.compile(r'[ "=\\]')
_QUOTED = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def logfmt_value(value: object) -> str:
    """One logfmt value: bare when it is safe, else double-quoted with every dangerous character escaped.

    Bare values are printable and hold no space, quote, ``=`` or backslash. Inside quotes,
    ``\\`` and ``"`` are escaped, ``\\n \\r \\t`` as such, and any other character that
    :meth:`str.isprintable` refuses (controls, line and paragraph separators, bidi overrides,
    lone surrogates) as a ``\\x``/``\\u`` escape, so the line stays one line and encodes as UTF-8.
    """
    text = value if isinstance(value, str) else str(value)
    printable = text.isprintable()
    if text and printable and not _NEEDS_QUOTES.search(text):
        return text
    text = text.translate(_QUOTED)
    if not printable:
        text = escape_unprintable(text)
    return f'"{text}"'


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (only the names in :data:`FIELDS`)."""
    attributes = record.__dict__
    return {name: attributes[name] for name in FIELDS if attributes.get(name) is not None}


class _StampCache:
    """The record's UTC time, formatted once per second: the ack path logs every callback."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def stamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}Z"


class LogfmtFormatter(logging.Formatter):
    """``time=… level=… logger=… msg=… field=…``, one line per record, every value escaped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Arguments are accepted and ignored, so logging.config (gunicorn's logconfig_dict) can build it.
        super().__init__()
        self._clock = _StampCache()
        self._heads: dict[tuple[str, str], str] = {}

    def format(self, record: logging.LogRecord) -> str:
        """The record as one logfmt line."""
        head = self._heads.get((record.levelname, record.name))
        if head is None:  # a few loggers and levels: their text is made once (every callback logs)
            head = self._heads[(record.levelname, record.name)] = (
                f"level={record.levelname.lower()} logger={logfmt_value(record.name)}"
            )
        parts = [f"time={self._clock.stamp(record)} {head} msg={logfmt_value(record.getMessage())}"]
        attributes = record.__dict__
        for name in FIELDS:
            value = attributes.get(name)
            if value is not None:
                parts.append(f"{name}={logfmt_value(value)}")
        if record.exc_info or record.exc_text or record.stack_info:
            parts.append(f"exc={logfmt_value(_error_text(self, record))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``LOG_FORMAT=json``), ASCII-only so any text encodes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._clock = _StampCache()

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        line: dict[str, Any] = {
            "time": self._clock.stamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in record_fields(record).items():
            line[name] = value if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
        error = _error_text(self, record)
        if error:
            line["exc"] = error
        # ensure_ascii: a lone surrogate becomes \udXXX instead of failing to encode.
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"), default=str)


def _error_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback and stack, if any, as one string (the caller escapes it)."""
    text = ""
    if record.exc_info:
        # Cached as logging does, so several handlers format it once.
        if not record.exc_text:
            record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        text = record.exc_text
    if record.stack_info:
        stack = formatter.formatStack(record.stack_info)
        text = f"{text}\n{stack}" if text else stack
    return text


FORMATTERS: Mapping[str, type[logging.Formatter]] = {LOGFMT: LogfmtFormatter, JSON: JsonFormatter}
"""The formatter class of each LOG_FORMAT."""


def _formatter_class(log_format: str) -> type[logging.Formatter]:
    try:
        return FORMATTERS[log_format]
    except KeyError:
        expected = ", ".join(defaults.LOG_FORMATS)
        raise ValueError(f"unknown log format {log_format!r}: expected one of {expected}") from None


def formatter_for(log_format: str) -> logging.Formatter:
    """A formatter of the given LOG_FORMAT (``logfmt`` or ``json``)."""
    return _formatter_class(log_format)()


def is_ours(handler: logging.Handler) -> bool:
    """True for a handler that prints through one of this module's formatters."""
    return isinstance(handler.formatter, LogfmtFormatter | JsonFormatter)


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict sending every logger (gunicorn's too) to stderr in our format.

    gunicorn's ``logconfig_dict`` takes it: its own loggers lose their handlers (whose format
    printed ``%(process)d``) and propagate to the root's one handler, as every other logger does.
    """
    formatter = _formatter_class(log_format)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": formatter}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "structured", "stream": "ext://sys.stderr"}
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


def configure_logging(level: int = logging.INFO, log_format: str | None = None) -> None:
    """Send every log record of this process to stderr, one structured line each (idempotent).

    ``log_format`` defaults to LOG_FORMAT from the environment (``logfmt`` or ``json``); a bad
    value raises :class:`~callback_server.exceptions.ConfigError` naming it.
    """
    # The logging HOWTO's optimisations: the line prints none of these, and every callback logs
    # once, so collecting them (a stack walk for the caller) is wasted CPU. The process id stays
    # collected: other formatters (gunicorn's, a library's) may print %(process)d, and a None
    # there is a "--- Logging error ---" on every line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    if any(is_ours(h) for h in root.handlers):
        return  # already ours (gunicorn's logconfig_dict set it up, or a second call)
    if log_format is None:
        from callback_server.config import log_format_from_env

        log_format = log_format_from_env()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level)

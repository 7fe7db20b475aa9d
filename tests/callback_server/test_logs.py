"""The log format: one escaped logfmt (or JSON) line per record, whatever a sender puts in a field."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from callback_server.config import log_format_from_env
from callback_server.exceptions import ConfigError
from callback_server.logs import (
    FIELDS,
    JsonFormatter,
    LogfmtFormatter,
    formatter_for,
    logfmt_value,
    logging_config,
)
from tests.support.logfmt import LogfmtError, parse

NASTY = 'abc\n2026-01-01T00:00:00.000Z level=error msg="forged" task_id=x\r\t "q" \\ a=b \x00\x1b[31m\u2028\u202e\ud800'
"""A task id with every way to break or forge a line: newlines, quotes, key=value, controls, a lone surrogate."""


def _record(msg: str = "callback %s", *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("callback_server.web.ingest", logging.INFO, __file__, 1, msg, args or None, exc_info)
    record.__dict__.update(extra)
    return record


def _emit(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """What a real StreamHandler writes, encoded as stderr would be (strict UTF-8)."""
    stream = io.BytesIO()
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="\n")
    handler = logging.StreamHandler(text)
    handler.setFormatter(formatter)
    handler.handleError = lambda record: (_ for _ in ()).throw(AssertionError("logging error"))  # type: ignore[method-assign]
    handler.emit(record)
    text.flush()
    return stream.getvalue().decode("utf-8")


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        " ",
        "a b",
        'say "hi"',
        "a=b",
        "back\\slash",
        "new\nline",
        "\r\n",
        "tab\there",
        "\x00\x07\x1b\x7f\x85",
        "\u2028\u2029\u202e",
        "\ud800",
        "\U0001f600",
        "caf\u00e9",
        "=",
        '"',
        "\\",
    ],
)
def test_every_value_reads_back_exactly_from_one_line(value: str) -> None:
    line = f"k={logfmt_value(value)}"
    assert "\n" not in line and "\r" not in line
    line.encode("utf-8")  # no lone surrogate left to fail the write
    assert parse(line) == {"k": value}


@pytest.mark.parametrize(
    "line",
    [
        "2026-01-01T00:00:00.000Z INFO callback_server.web.ingest callback queued task_id=t1",  # the old format
        'k="unterminated',
        "k=a=b",
        'k="bad \\q escape"',
        "k=v  j=w",
        "k=",
        "=v",
        'k="raw\x01control"',
    ],
)
def test_the_reader_is_strict(line: str) -> None:
    with pytest.raises(LogfmtError):
        parse(line)


def test_safe_values_stay_bare_and_others_are_quoted() -> None:
    assert logfmt_value("categorization") == "categorization"
    assert logfmt_value(12.5) == "12.5"
    assert logfmt_value("") == '""'
    assert logfmt_value("a b") == '"a b"'
    assert logfmt_value("a=b") == '"a=b"'
    assert logfmt_value('x"y') == '"x\\"y"'
    assert logfmt_value("x\ny") == '"x\\ny"'
    assert logfmt_value("\x1b") == '"\\x1b"'
    assert logfmt_value("\ud800") == '"\\ud800"'


def test_a_forged_task_id_stays_one_line_with_the_right_fields() -> None:
    record = _record("callback %s", "queued", task_id=NASTY, outcome="queued", mode="live", request_id="req-1")
    written = _emit(LogfmtFormatter(), record)
    assert written.count("\n") == 1 and written.endswith("\n")
    fields = parse(written[:-1])
    assert fields["task_id"] == NASTY
    assert fields["msg"] == "callback queued"
    assert fields["level"] == "info"
    assert fields["logger"] == "callback_server.web.ingest"
    assert fields["outcome"] == "queued" and fields["mode"] == "live" and fields["request_id"] == "req-1"
    assert "msg" in fields and list(fields).count("level") == 1
    assert set(fields) == {"time", "level", "logger", "msg", "task_id", "outcome", "mode", "request_id"}


def test_a_forged_message_argument_cannot_add_fields_either() -> None:
    written = _emit(LogfmtFormatter(), _record("no handler for %s", NASTY))
    fields = parse(written.rstrip("\n"))
    assert fields["msg"] == f"no handler for {NASTY}"
    assert set(fields) == {"time", "level", "logger", "msg"}


def test_only_declared_fields_are_printed_so_a_body_in_extra_never_is() -> None:
    fields = parse(LogfmtFormatter().format(_record(body='{"secret": 1}', task_id="t1", key="k")))
    assert fields["task_id"] == "t1"
    assert "body" not in fields and "key" not in fields
    assert "secret" not in LogfmtFormatter().format(_record(body='{"secret": 1}'))


def test_fields_print_in_declared_order() -> None:
    line = LogfmtFormatter().format(_record(outcome="queued", task_id="t1", request_id="r1"))
    keys = list(parse(line))
    assert keys[:4] == ["time", "level", "logger", "msg"]
    assert keys[4:] == [name for name in FIELDS if name in {"outcome", "task_id", "request_id"}]


def test_a_traceback_is_one_escaped_field_of_the_same_line() -> None:
    written = _emit(LogfmtFormatter(), _record("handler failed", exc=True, handler="h"))
    assert written.count("\n") == 1
    fields = parse(written.rstrip("\n"))
    assert fields["exc"].startswith("Traceback (most recent call last):")
    assert fields["exc"].endswith("ValueError: boom\nsecond line")
    assert fields["handler"] == "h"


def test_json_lines_carry_the_same_fields_and_survive_a_lone_surrogate() -> None:
    written = _emit(
        JsonFormatter(), _record("callback %s", "queued", task_id=NASTY, latency_ms=1.5, attempt=2, exc=True)
    )
    assert written.count("\n") == 1
    line = json.loads(written)
    assert line["task_id"] == NASTY
    assert line["latency_ms"] == 1.5 and line["attempt"] == 2
    assert line["msg"] == "callback queued" and line["level"] == "info"
    assert line["exc"].endswith("ValueError: boom\nsecond line")
    assert written.isascii()


def test_the_time_is_utc_with_milliseconds() -> None:
    record = _record()
    record.created, record.msecs = 0.25, 250.0
    assert parse(LogfmtFormatter().format(record))["time"] == "1970-01-01T00:00:00.250Z"


def test_log_format_is_read_and_checked() -> None:
    assert log_format_from_env({}) == "logfmt"
    assert log_format_from_env({"LOG_FORMAT": " JSON "}) == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT must be one of logfmt, json, got 'xml'"):
        log_format_from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        formatter_for("xml")


@pytest.fixture
def gunicorn_loggers() -> Iterator[None]:
    """Leave the root logger and gunicorn's loggers as they were."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    names = ("gunicorn.error", "gunicorn.access")
    loggers = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in names}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, propagate) in loggers.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def test_gunicorn_s_logger_goes_through_our_formatter_even_without_process_ids(
    gunicorn_loggers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The boot error's cause: a formatter printing %(process)d while process ids are not collected."""
    gunicorn_error = logging.getLogger("gunicorn.error")
    gunicorn_error.addHandler(logging.StreamHandler(sys.stderr))  # what gunicorn's own setup leaves
    gunicorn_error.handlers[-1].setFormatter(logging.Formatter("[%(process)d] %(message)s"))
    logging.config.dictConfig(logging_config("logfmt", "info"))
    assert gunicorn_error.handlers == [] and gunicorn_error.propagate
    saved = logging.logProcesses
    logging.logProcesses = False
    try:
        gunicorn_error.info("Booting worker with pid: %s", 42)
    finally:
        logging.logProcesses = saved
    err = capsys.readouterr().err
    assert "Logging error" not in err
    fields = parse(err.strip().splitlines()[-1])
    assert fields["logger"] == "gunicorn.error" and fields["msg"] == "Booting worker with pid: 42"


def test_logging_config_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown log format 'text'"):
        logging_config("text")
    assert logging_config("json")["formatters"]["structured"]["()"] is JsonFormatter


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("0b4d7e1c-5d1f-4f7e-9b1a-2f1c3e4d5a6b", True),
        ("abc+/=-" * 3, True),
        ("bad id", False),
        ("t\u00f6t", False),
        ("x" * 201, False),
        ('"quoted"', False),
        (None, False),
    ],
)
def test_the_router_s_request_id_is_in_the_ack_line_and_the_job(
    client: Any, redis_conn: Any, caplog: pytest.LogCaptureFixture, header: str | None, kept: bool
) -> None:
    from tests.support.fixtures import load_fixture
    from tests.support.keys import LIVE_KEY

    headers = {"scale-callback-auth": LIVE_KEY}
    if header is not None:
        headers["X-Request-ID"] = header
    with caplog.at_level(logging.INFO, logger="callback_server.web.ingest"):
        answer = client.post(
            "/callback",
            data=json.dumps(load_fixture("categorization")),
            content_type="application/json",
            headers=headers,
        )
    assert answer.get_json() == {"status": "queued"}
    [ack] = [r for r in caplog.records if getattr(r, "outcome", None) == "queued"]
    if kept:
        assert ack.request_id == header
    else:
        assert ack.request_id != header and len(ack.request_id) == 32  # a fresh one, never the bad value
    job_id = redis_conn.lindex("rq:queue:callbacks", 0).decode()
    data = json.loads(redis_conn.hget(f"rq:job:{job_id}", "data"))
    assert data[2][0]["request_id"] == ack.request_id

"""What an operator reads of a failed try: one line, the error's type and its whole message."""

from __future__ import annotations

import traceback

from callback_server.jobs import summary_line


def formatted(exc: BaseException) -> str:
    try:
        raise exc
    except BaseException:
        return traceback.format_exc()


def test_a_message_over_several_lines_is_shown_whole_not_its_last_line() -> None:
    text = formatted(RuntimeError("store told to fail\nsecond line"))
    assert summary_line(text) == "RuntimeError: store told to fail / second line"


def test_a_chained_failure_shows_the_last_exception() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError:
        text = traceback.format_exc()
    assert summary_line(text) == "ValueError: outer"


def test_the_dispatch_summary_line_wins_and_text_without_frames_is_its_last_line() -> None:
    text = (
        "Traceback ...\nworkers.dispatch.HandlerFailedError: 1 handler(s) failed: a.b (KeyError: 'x')\n--- a.b ---\n..."
    )
    assert summary_line(text) == "1 handler(s) failed: a.b (KeyError: 'x')"
    assert summary_line("just one line\nand another") == "and another"
    assert summary_line("") == ""

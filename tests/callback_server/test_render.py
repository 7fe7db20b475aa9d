"""The terminal renderer: what a sender put in a field is shown, never executed by the terminal."""

from __future__ import annotations

import pytest

from callback_server.render import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain task id 5f1a", "plain task id 5f1a"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: retitles the terminal
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # CSI: clears the screen
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("ok\rFAKE", "ok\\rFAKE"),  # carriage return overwrites the line
        ("one\ntwo\tthree", "one\\ntwo\\tthree"),
        ("abc\u202edcba", "abc\\u202edcba"),  # bidi override
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("caf\u00e9 \u65e5\u672c \U0001f600", "caf\u00e9 \u65e5\u672c \U0001f600"),  # printable text stays
        ("back\\slash \\x1b", "back\\slash \\x1b"),  # text that only looks like an escape stays text
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
    ],
)
def test_printable(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_multiline_keeps_newlines_and_tabs_only() -> None:
    assert printable('{\n\t"a": "\x1b]0;x\x07\r"\n}', multiline=True) == '{\n\t"a": "\\x1b]0;x\\x07\\r"\n}'


def test_non_text_values_are_rendered_too() -> None:
    assert printable(12) == "12"
    assert printable(None) == "None"

"""Text from senders made safe to print on an operator's terminal.

A task id, a reason or a body comes from whoever holds the key (or from Scale's API). Printed
raw, an ESC or OSC sequence in it could retitle the terminal, hide lines or fake output, and a
carriage return or a bidi override could make one thing look like another. Every such
character is shown as an escape instead (``\\x1b``, ``\\r``, ``\\u202e``), so what an operator
reads is what is stored.
"""

from __future__ import annotations

import unicodedata

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
"""Controls, format characters (bidi overrides, zero-width), line/paragraph separators,
surrogates, private-use and unassigned code points."""


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_char(char: str) -> str:
    """A character as a ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN`` escape (lone surrogates included)."""
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_unprintable(text: str) -> str:
    """``text`` with every character :meth:`str.isprintable` refuses written as an escape (logs, Sentry tags)."""
    return "".join(c if c.isprintable() else escape_char(c) for c in text)


def _escape(char: str) -> str:
    return _NAMED_ESCAPES.get(char) or escape_char(char)


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def printable(value: object, *, multiline: bool = False) -> str:
    """``value`` as text with every control or invisible-formatting character escaped.

    Backslashes are left alone, so a JSON body reads as it was sent (a literal ``\\x1b`` in it
    is only text). With ``multiline``, newlines and tabs are kept, for a body shown over lines.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable():
        return text  # the common case, without a per-character walk
    keep = "\n\t" if multiline else ""
    return "".join(_escape(c) if c not in keep and _unsafe(c) else c for c in text)


def shorten(value: object, limit: int) -> str:
    """:func:`printable` on one line, cut at ``limit`` characters (marked ``...`` when cut)."""
    flat = printable(value)
    return flat[:limit] + ("..." if len(flat) > limit else "")

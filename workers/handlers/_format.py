"""Summaries for the example handlers' log lines that hold whatever the receiver accepted.

The receiver validates each type's response, but params, metadata and unknown fields pass as
sent, and a valid number may still be huge. A log line must never be what makes a handler
fail (a handler that raises is retried for hours), nor be lost to a formatting error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

MAX_SHOWN = 20
"""Most names listed in one log line; the rest are counted."""


def count(value: Any) -> int:
    """How many items: a list, tuple or dict's length, 0 for None, 1 for any single value."""
    if value is None:
        return 0
    if isinstance(value, list | tuple | dict):
        return len(value)
    return 1


def seconds(value: Any) -> str:
    """A duration for a log line (``12.5 s``), whatever the number's size or type."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "unknown length" if value is None else "unreadable length"
    try:
        number = float(value)
    except OverflowError:
        return "an overlong length"
    return f"{number:.1f} s" if math.isfinite(number) else "an overlong length"


def names(values: Iterable[Any]) -> str:
    """Names as ``a, b, c`` (sorted as text, at most MAX_SHOWN, then ``+N more``), or ``none``."""
    shown = sorted(str(value) for value in values)
    if not shown:
        return "none"
    more = f" +{len(shown) - MAX_SHOWN} more" if len(shown) > MAX_SHOWN else ""
    return ", ".join(shown[:MAX_SHOWN]) + more


def host(url: object) -> str:
    """Where a URL points, without its path or query: a signed URL's query is a credential, never logged."""
    if not isinstance(url, str):
        return "no url"
    return urlsplit(url).netloc or "no host"

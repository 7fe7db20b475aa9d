"""A strict logfmt reader for the tests: what callback_server.logs prints must read back exactly."""

from __future__ import annotations

import re

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_HEX = {"x": 2, "u": 4, "U": 8}


class LogfmtError(ValueError):
    """A line that is not strict logfmt (every token ``key=value``, values bare or quoted)."""


def parse(line: str) -> dict[str, str]:
    """The fields of one logfmt line; raise :class:`LogfmtError` naming where it goes wrong."""
    fields: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        key = _KEY.match(line, i)
        if key is None or key.end() >= n or line[key.end()] != "=":
            raise LogfmtError(f"expected key= at column {i}: {line!r}")
        name = key.group()
        if name in fields:
            raise LogfmtError(f"field {name!r} appears twice: {line!r}")
        i = key.end() + 1
        if i < n and line[i] == '"':
            value, i = _quoted(line, i + 1)
        else:
            end = line.find(" ", i)
            end = n if end == -1 else end
            value = line[i:end]
            if not value or any(c in value for c in '"=\\') or not value.isprintable():
                raise LogfmtError(f"bad bare value for {name!r}: {line!r}")
            i = end
        fields[name] = value
        if i < n:
            if line[i] != " " or i + 1 == n:
                raise LogfmtError(f"expected one space at column {i}: {line!r}")
            i += 1
    return fields


def _quoted(line: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    n = len(line)
    while i < n:
        char = line[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            if i + 1 >= n:
                break
            code = line[i + 1]
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
                i += 2
                continue
            if code in _HEX:
                digits = line[i + 2 : i + 2 + _HEX[code]]
                if len(digits) != _HEX[code] or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise LogfmtError(f"bad \\{code} escape at column {i}: {line!r}")
                out.append(chr(int(digits, 16)))
                i += 2 + _HEX[code]
                continue
            raise LogfmtError(f"unknown escape \\{code} at column {i}: {line!r}")
        if not char.isprintable():
            raise LogfmtError(f"unescaped unprintable {char!r} at column {i}: {line!r}")
        out.append(char)
        i += 1
    raise LogfmtError(f"unterminated quoted value: {line!r}")

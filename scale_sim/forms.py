"""Form-encoded bodies as the reference's curl examples send them: repeated keys and `a[b][0]` brackets.

`-d categories=a -d categories=b` becomes ``{"categories": ["a", "b"]}``; `-d fields[title]=T`
becomes ``{"fields": {"title": "T"}}``; `-d examples[0][correct]=true` becomes
``{"examples": {"0": {"correct": "true"}}}``: numeric keys stay strings here, and the validation
of each parameter turns them into a list where it expects one (so ``category_ids[123]`` stays a
mapping). Every leaf is a string; the validation converts booleans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from scale_sim.exceptions import InvalidRequestError

MAX_DEPTH = 4
"""Most bracket levels in one parameter name; the reference's deepest is `examples[0][correct]`."""

_NAME = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def split_key(key: str) -> list[str]:
    """``"examples[0][correct]"`` -> ``["examples", "0", "correct"]``; ``"a[]"`` -> ``["a", ""]``."""
    match = _NAME.match(key)
    if match is None:
        raise InvalidRequestError(f"Malformed parameter name {key!r}")
    segments = [match.group(1), *_SEGMENT.findall(match.group(2))]
    if len(segments) > MAX_DEPTH + 1:
        raise InvalidRequestError(f"Parameter name {key!r} nests deeper than {MAX_DEPTH} levels")
    if "" in segments[:-1]:
        raise InvalidRequestError(f"Parameter name {key!r}: [] may only come last")
    return segments


def _conflict(key: str) -> InvalidRequestError:
    return InvalidRequestError(f"Parameter {key!r} is given both as a value and as an object with [keys]")


def parse_form(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest form items by their bracketed names; a repeated name or a trailing [] makes a list."""
    tree: dict[str, Any] = {}
    for key, value in items:
        segments = split_key(key)
        node = tree
        appending = segments[-1] == ""
        if appending:
            segments = segments[:-1]
        for segment in segments[:-1]:
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                raise _conflict(key)
            node = child
        leaf_name = segments[-1]
        if appending:
            existing = node.setdefault(leaf_name, [])
            if isinstance(existing, dict):
                raise _conflict(key)
            if isinstance(existing, str):
                node[leaf_name] = existing = [existing]
            existing.append(value)
        elif leaf_name not in node:
            node[leaf_name] = value
        elif isinstance(node[leaf_name], dict):
            raise _conflict(key)
        elif isinstance(node[leaf_name], list):
            node[leaf_name].append(value)
        else:
            node[leaf_name] = [node[leaf_name], value]
    return tree

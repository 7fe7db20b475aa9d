"""The recorded callback bodies of tests/fixtures/, and a poison body made from one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
"""tests/fixtures/: a recorded callback body per task type, and the events' bodies."""


def load_fixture(name: str) -> dict[str, Any]:
    """A recorded callback body from tests/fixtures/."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def poison_body(depth: int = 1000) -> str:
    """A categorization callback whose response nests ``depth`` arrays: it parses, but breaks the
    identity's encoder (RecursionError), so the receiver quarantines it and a replay must keep it."""
    body = load_fixture("categorization")
    body["response"]["extra"] = []
    body["task"]["response"] = body["response"]
    return json.dumps(body).replace('"extra": []', '"extra": ' + "[" * depth + "]" * depth)

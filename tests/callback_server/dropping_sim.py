"""A Scale simulator that drops every callback and completes nothing by itself: what the
reconciler and ``fetch`` exist for (their tests drive it task by task)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from scale_sim.config import Secret as SimSecret
from scale_sim.config import SimSettings
from scale_sim.server import SimServer
from tests.conftest import LIVE_KEY


@dataclass
class Sim:
    """The simulator's API as one account (``api_key``) sees it."""

    server: SimServer
    api_key: str

    def call(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        answer = requests.request(
            method, f"{self.server.api_url}/{path}", json=body or None, auth=(self.api_key, ""), timeout=10
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def create(self, project: str | None = None) -> str:
        extra = {"project": project} if project else {}
        task = self.call(
            "POST",
            "task/categorization",
            instruction="Red or blue?",
            attachment_type="text",
            attachment="tomato",
            categories=["red", "blue"],
            **extra,
        )
        return str(task["task_id"])

    def complete(self, task_id: str, category: str = "red") -> dict[str, Any]:
        return self.call("POST", f"task/{task_id}/complete", response={"category": category})


@contextmanager
def dropping_sim(tmp_path: Path, api_key: str) -> Iterator[Sim]:
    """The simulator, every callback dropped (fault ``drop``), nothing completing unless told to."""
    settings = SimSettings(
        callback_auth_key=SimSecret(LIVE_KEY),
        completion_delay=10**6,
        faults=("drop",),
        default_callback_url="http://127.0.0.1:9/callback",
        data_path=str(tmp_path / "sim.sqlite3"),
    )
    with SimServer(settings, start_scheduler=False) as server:
        yield Sim(server, api_key)

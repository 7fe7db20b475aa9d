"""Scale simulators for the receiver's tests: one that drops every callback, one that completes at once,
and many tasks made in process.

The dropping one completes nothing by itself: what the reconciler and ``fetch`` exist for (their
tests drive it task by task). ``make_tasks`` serves the rerun tests and ``bench/rerun.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from scale_sim.auth import account_for_key
from scale_sim.config import Secret as SimSecret
from scale_sim.config import SimSettings
from scale_sim.server import SimServer
from scale_sim.validation import validate_task
from tests.support.keys import LIVE_KEY


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


def prompt_sim_settings(callback_url: str, data: Path) -> SimSettings:
    """A simulator that completes tasks at once and compresses Scale's 24 h of retries to seconds."""
    return SimSettings(
        callback_auth_key=SimSecret(LIVE_KEY),
        completion_delay=0.0,
        time_scale=0.0001,
        default_callback_url=callback_url,
        data_path=str(data),
        callback_timeout=2.0,
    )


def make_tasks(
    server: SimServer, api_key: str, count: int, *, project: str | None = None, complete: bool = True
) -> list[dict[str, Any]]:
    """``count`` categorization tasks of ``api_key``'s account (completed unless told not to), as the API shows them."""
    simulator = server.simulator
    account = account_for_key(api_key)
    data: dict[str, Any] = {
        "instruction": "Red or blue?",
        "attachment_type": "text",
        "attachment": "tomato",
        "categories": ["red", "blue"],
    }
    if project is not None:
        data["project"] = project
    spec = validate_task("categorization", data, default_callback_url=simulator.settings.default_callback_url)
    made = []
    for n in range(count):
        task = simulator.create_task(account, spec)
        if complete:
            task = simulator.complete_task(task["task_id"], {"category": "red" if n % 2 else "blue"}, account)
        made.append(task)
    return made

"""Many simulator tasks at once, for the rerun tests and ``bench/rerun.py``: made in process, without HTTP."""

from __future__ import annotations

from typing import Any

from scale_sim.auth import account_for_key
from scale_sim.server import SimServer
from scale_sim.validation import validate_task


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

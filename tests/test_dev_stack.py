"""The README's run command: `python -m callback_server dev` brings the whole stack up and down."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import psutil
import pytest
import requests

from callback_server.devserver import DEV_CALLBACK_KEY
from callback_server.embedded import free_port
from tests.conftest import load_fixture
from tests.processes import child_env, process, wait_for

pytestmark = pytest.mark.slow


def answers(url: str) -> bool:
    """True once the URL answers 200 (a refused connection is just "not yet")."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_dev_runs_receiver_worker_and_simulator_on_an_embedded_redis_and_stops_them_all(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    args = [sys.executable, "-m", "callback_server", "dev", "--port", str(port), "--sim-port", str(sim_port),
            "--data", str(tmp_path / "var")]
    log = tmp_path / "dev.log"
    with process(args, child_env(), log) as dev:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the receiver")
        body = load_fixture("categorization")
        answer = requests.post(f"http://127.0.0.1:{port}/callback", data=json.dumps(body), timeout=10,
                               headers={"scale-callback-auth": DEV_CALLBACK_KEY, "Content-Type": "application/json"})
        assert answer.json() == {"status": "queued"}
        # The simulator completes a task and calls the receiver back; the worker logs the result.
        wait_for(lambda: answers(f"http://127.0.0.1:{sim_port}/"), timeout=30, what="the simulator")
        created = requests.post(
            f"http://127.0.0.1:{sim_port}/v1/task/categorization", auth=("test_dev", ""), timeout=10,
            data={"instruction": "Red or blue?", "attachment_type": "text", "attachment": "tomato",
                  "categories": ["red", "blue"]},
        ).json()
        wait_for(lambda: f"categorization {created['task_id']}:" in log.read_text(), timeout=30,
                 what="the worker to handle the simulator's callback")
        assert f"categorization {body['task_id']}: red" in log.read_text()
        data = tmp_path / "var" / "redis"
        assert (data / "appendonlydir").exists() or any(data.glob("*.aof"))  # persisted, not in memory only
        children = psutil.Process(dev.pid).children(recursive=True)
        assert len(children) >= 4  # redis, gunicorn (master and workers), worker, simulator
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []

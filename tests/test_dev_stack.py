"""The README's run command: `python -m callback_server dev` brings the whole stack up and down."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import requests

from callback_server.devserver import DEV_CALLBACK_KEY, REDIS_URL_FILE
from callback_server.embedded import free_port
from tests.conftest import load_fixture
from tests.processes import answers, child_env, dev_args, process, run_cli, wait_for

pytestmark = pytest.mark.slow


def create_categorization(sim_port: int, api_key: str) -> dict[str, str]:
    """A categorization task on the dev stack's simulator (it completes it and calls the receiver back)."""
    data = {
        "instruction": "Red or blue?",
        "attachment_type": "text",
        "attachment": "tomato",
        "categories": ["red", "blue"],
    }
    answer = requests.post(
        f"http://127.0.0.1:{sim_port}/v1/task/categorization", auth=(api_key, ""), timeout=10, data=data
    )
    task: dict[str, str] = answer.json()
    return task


def test_dev_runs_receiver_worker_and_simulator_on_an_embedded_redis_and_stops_them_all(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    args = dev_args(port, sim_port, tmp_path / "var")
    log = tmp_path / "dev.log"
    with process(args, child_env(), log) as dev:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the receiver")
        body = load_fixture("categorization")
        answer = requests.post(
            f"http://127.0.0.1:{port}/callback",
            data=json.dumps(body),
            timeout=10,
            headers={"scale-callback-auth": DEV_CALLBACK_KEY, "Content-Type": "application/json"},
        )
        assert answer.json() == {"status": "queued"}
        # The simulator completes a task and calls the receiver back; the worker logs the result.
        wait_for(lambda: answers(f"http://127.0.0.1:{sim_port}/"), timeout=30, what="the simulator")
        created = create_categorization(sim_port, "test_dev")
        wait_for(
            lambda: f"categorization {created['task_id']}:" in log.read_text(),
            timeout=30,
            what="the worker to handle the simulator's callback",
        )
        assert f"categorization {body['task_id']}: red" in log.read_text()
        data = tmp_path / "var" / "redis"
        assert (data / "appendonlydir").exists() or any(data.glob("*.aof"))  # persisted, not in memory only
        children = psutil.Process(dev.pid).children(recursive=True)
        assert len(children) >= 4  # redis, gunicorn (master and workers), worker, simulator
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=60) == 0
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []


def cli(var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command run beside `make run` in the directory holding its var/, with no variable set."""
    return run_cli(child_env(), *args, cwd=var.parent)


def test_commands_beside_make_run_need_no_variable_and_test_tasks_arrive_as_test(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    var = tmp_path / "var"
    args = dev_args(port, sim_port, var)
    log = tmp_path / "dev.log"
    # No variable at all: the commands below find everything through var/ (child_env drops SCALE_*, REDIS_URL).
    assert cli(var, "quarantine", "list").returncode != 0
    with process(args, child_env(), log) as dev:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the receiver")
        wait_for(lambda: answers(f"http://127.0.0.1:{sim_port}/"), timeout=30, what="the simulator")
        redis_url = (var / REDIS_URL_FILE).read_text().strip()
        assert redis_url.startswith("redis://127.0.0.1:")

        # A task created with a test_ key calls back with the test key: the receiver logs mode=test.
        created = create_categorization(sim_port, "test_newcomer")

        def ack_line() -> str:
            return next(
                (
                    line
                    for line in log.read_text().splitlines()
                    if created["task_id"] in line and "callback queued" in line
                ),
                "",
            )

        assert "mode=test" in wait_for(ack_line, timeout=30, what="the simulator's callback")

        for command in (["quarantine", "list"], ["failed", "list"], ["reconcile", "runs"]):
            done = cli(var, *command)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            assert f"REDIS_URL is unset: using make run's Redis {redis_url}" in done.stderr
        assert "0 of 0 quarantined" in cli(var, "quarantine", "list").stderr
        # The clock `make run` starts has reconciled against the simulator at least once.
        wait_for(lambda: "complete" in cli(var, "reconcile", "runs").stdout, timeout=60, what="the clock's run")
        # doctor beside make run: everything but the (absent) public URL checks out.
        doctor = cli(var, "doctor", "--url", f"http://127.0.0.1:{port}/callback")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=60) == 0
    # Stopped: the file is gone, so no command reaches for a Redis that is not there.
    assert not (var / REDIS_URL_FILE).exists()

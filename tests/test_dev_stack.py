"""The README's run command: `python -m callback_server dev` brings the whole stack up and down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import requests

from callback_server.devserver import DEV_API_KEY, DEV_CALLBACK_KEY, REDIS_URL_FILE
from callback_server.embedded import free_port
from tests.support.fixtures import load_fixture
from tests.support.http import answers
from tests.support.processes import ROOT, child_env, dev_args, kill_tree, process, run_cli, wait_for

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


KIT_HANDLERS = """
import logging

from workers import handles

log = logging.getLogger(__name__)


@handles("categorization")
def first_version(task):
    log.info("first version saw %s", task.task_id)
"""


def dev_in_own_group(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`make run` as a terminal runs it: the leader of a process group, which Ctrl-C signals as a whole."""
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_make_run_reloads_the_worker_prints_its_api_key_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    var = tmp_path / "var"
    package = tmp_path / "kit" / "kit_handlers"
    package.mkdir(parents=True)
    module = package / "__init__.py"
    module.write_text(KIT_HANDLERS)
    env = child_env(CALLBACK_HANDLERS="kit_handlers", PYTHONPATH=str(tmp_path / "kit"))
    log = tmp_path / "dev.log"
    dev = dev_in_own_group(dev_args(port, sim_port, var), env, log)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the receiver")
        wait_for(lambda: answers(f"http://127.0.0.1:{sim_port}/"), timeout=30, what="the simulator")
        assert f"scale api key    '{DEV_API_KEY}'" in log.read_text()
        wait_for(lambda: "handler=kit_handlers.first_version" in log.read_text(), what="the worker's handler list")

        # The key make run prints is the one its clock and `fetch` list tasks with.
        created = create_categorization(sim_port, DEV_API_KEY)
        wait_for(lambda: f"first version saw {created['task_id']}" in log.read_text(), timeout=30, what="handler")
        fetched = cli(var, "fetch", created["task_id"])
        assert fetched.returncode == 0 and "already had" in fetched.stdout, fetched.stdout + fetched.stderr

        # A handler module changes: the worker restarts with the new code, the rest of the stack stays up.
        web_pid = next(p.pid for p in psutil.Process(dev.pid).children() if "gunicorn" in " ".join(p.cmdline()))
        module.write_text(KIT_HANDLERS.replace("first_version", "second_version").replace("first", "second"))
        wait_for(lambda: "changed: restarting the worker" in log.read_text(), timeout=30, what="the reloader")
        wait_for(lambda: "handler=kit_handlers.second_version" in log.read_text(), timeout=30, what="the new list")
        again = create_categorization(sim_port, DEV_API_KEY)
        wait_for(lambda: f"second version saw {again['task_id']}" in log.read_text(), timeout=30, what="new code")
        assert psutil.pid_exists(web_pid)

        # A module that does not import stops the worker, not the stack; the next change starts it again.
        module.write_text("raise ImportError('half-typed')\n")
        wait_for(lambda: "the worker exited with 1" in log.read_text(), timeout=30, what="the worker's exit")
        assert answers(f"http://127.0.0.1:{port}/readyz")
        module.write_text(KIT_HANDLERS)
        wait_for(lambda: log.read_text().count("handler=kit_handlers.first_version") == 2, timeout=30, what="back")

        # Ctrl-C, as the terminal sends it to the whole group: web, worker, clock and simulator stop
        # before the embedded Redis, so nothing complains about a Redis that went first.
        children = psutil.Process(dev.pid).children(recursive=True)
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(timeout=90) == 0
    finally:
        if dev.poll() is None:
            kill_tree(dev)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
    text = log.read_text()
    assert "Traceback" not in text and "SystemExit" not in text, text[-3000:]
    assert "level=error" not in text, [line for line in text.splitlines() if "level=error" in line]
    assert "Shutting down: Master" in text
    assert not (var / REDIS_URL_FILE).exists()

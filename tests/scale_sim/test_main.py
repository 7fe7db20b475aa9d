"""`python -m scale_sim` as a process: it serves on PORT, completes and calls back, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.keys import API_TEST_KEY, CALLBACK_KEY
from tests.support.processes import wait_for
from tests.support.receiver import Receiver
from tests.support.tasks import json_body

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sim_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALE_SIM_") and k != "PORT"}
    env.update(extra)
    return env


def test_serves_completes_and_calls_back(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    env = sim_env(
        PORT=str(port),
        SCALE_SIM_DATA=str(tmp_path / "var" / "sim.sqlite3"),
        SCALE_SIM_COMPLETION_DELAY="0",
        SCALE_SIM_CALLBACK_AUTH_KEY=CALLBACK_KEY,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "scale_sim"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(f"{base}/", timeout=1).status_code == 200
            except requests.ConnectionError:
                return process.poll() is not None  # stop waiting if it died; asserted below

        wait_for(up, timeout=20, interval=0.05, what="the simulator to listen")
        assert process.poll() is None
        answer = requests.post(
            f"{base}/v1/task/categorization",
            json=json_body(receiver.url, "categorization"),
            auth=(API_TEST_KEY, ""),
        )
        assert answer.status_code == 200
        [callback] = receiver.wait_for(1, answer.json()["task_id"])
        assert callback.headers["Scale-Callback-Auth"] == CALLBACK_KEY
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    log = output.decode()
    assert "listening on" in log and "stopped" in log
    assert CALLBACK_KEY not in log and API_TEST_KEY not in log
    assert (tmp_path / "var" / "sim.sqlite3").exists()


def test_a_bad_variable_stops_it_with_the_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scale_sim"],
        cwd=tmp_path,
        env=sim_env(SCALE_SIM_FAULTS="meteor"),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"SCALE_SIM_FAULTS" in result.stderr and b"meteor" in result.stderr

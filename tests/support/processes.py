"""Real processes for the tests that need them: gunicorn, workers, and waiting on conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil

from callback_server.devserver import web_command
from tests.support.http import answers
from tests.support.keys import LIVE_KEY

ROOT = Path(__file__).resolve().parent.parent.parent
"""The repository's root: child processes run there."""
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = "") -> T:
    """Poll until ``condition()`` is truthy and return it; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child process: ours, the repo on the path, and the overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALE_", "REDIS_URL", "CALLBACK_"))}
    env.update(overrides)
    return env


def stack_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a test receiver or worker: our key, the recording handlers, fast heartbeats and cleanups."""
    base = {
        "REDIS_URL": redis_url,
        "SCALE_CALLBACK_AUTH_KEY": LIVE_KEY,
        "CALLBACK_HANDLERS": "workers.handlers,tests.workers.recording_handlers",
        "WORKER_HEARTBEAT": "1",
        "WORKER_MAINTENANCE_INTERVAL": "1",
        "HANDLER_RETRY_INTERVALS": "0,0",
        "WEB_CONCURRENCY": "2",
    }
    return child_env(**{**base, **overrides})


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child process with its output in ``log``; kill it on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and all its descendants at once, as Heroku does to a dyno.

    RQ's work horse leaves the worker's process group, so killing the group would miss it.
    """
    parent = psutil.Process(proc.pid)
    family = [*parent.children(recursive=True), parent]
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)
    psutil.wait_procs([m for m in family if m.pid != proc.pid], timeout=10)


def worker_args(*extra: str) -> list[str]:
    """The command line of a worker process."""
    return [sys.executable, "-m", "workers", *extra]


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``python -m callback_server ARGS`` to its end, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "callback_server", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_gunicorn(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 30) -> None:
    """Return once the gunicorn at ``base`` answers /healthz; fail at once, with its log's tail, if it exited."""

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}: {log.read_text()[-2000:]}")
        return answers(f"{base}/healthz")

    wait_for(up, timeout=timeout, what="gunicorn to answer /healthz")


@contextmanager
def gunicorn(env: dict[str, str], port: int, log: Path, *extra: str) -> Iterator[str]:
    """The real receiver under gunicorn with the shipped config; yields its base URL once it answers."""
    args = web_command(f"127.0.0.1:{port}", *extra)
    base = f"http://127.0.0.1:{port}"
    with process(args, env, log) as proc:
        wait_for_gunicorn(proc, base, log)
        yield base


def dev_args(port: int, sim_port: int, data: Path) -> list[str]:
    """The command line of ``make run`` (``python -m callback_server dev``) on the given ports and data folder."""
    return [
        sys.executable,
        "-m",
        "callback_server",
        "dev",
        "--port",
        str(port),
        "--sim-port",
        str(sim_port),
        "--data",
        str(data),
    ]

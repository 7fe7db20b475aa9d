"""Benchmarks (run each as a module from the repository root: ``python -m bench.ingest``)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from callback_server.devserver import web_command

ROOT = Path(__file__).resolve().parent.parent


def start_web(env: dict[str, str], port: int, *extra: str, app: str | None = None) -> subprocess.Popen[bytes]:
    """The receiver (or a comparison ``app``) under gunicorn with the shipped config, its output discarded."""
    command = web_command(f"127.0.0.1:{port}", *extra, **({"app": app} if app else {}))
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_web(proc: subprocess.Popen[bytes], url: str, *, method: str = "GET", timeout: float = 30.0) -> None:
    """Return once the server that :func:`start_web` started answers ``url`` at all (any status).

    Raises if it exits first, or if it has refused connections for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.request(method, url, timeout=1)
            return
        except requests.ConnectionError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode} before answering {url}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

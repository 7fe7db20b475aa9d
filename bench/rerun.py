"""How fast a rerun goes against the simulator: tasks listed and queued per second, and run end to end.

Run: ``.venv/bin/python -m bench.rerun [--tasks 2000] [--runs 3] [--workers 1]``. A private Redis and a
simulator holding ``--tasks`` completed categorization tasks (every callback dropped); then, per
run, the real command ``python -m callback_server rerun bench.handlers.noop --yes`` is timed from
start to exit (listing page by page through the API client, one script call per task to queue it),
while ``--workers`` shipped worker processes (``python -m workers``) run the rerun jobs; the run is
done when the counters say every rerun job finished. Two figures per run: the command's tasks per
second (listing and queueing, its Python start included) and end to end (until the last job ran).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench import ROOT
from callback_server import stats
from callback_server.embedded import RedisProcess
from scale_sim.config import Secret as SimSecret
from scale_sim.config import SimSettings
from scale_sim.server import SimServer
from tests.support.sims import make_tasks

API_KEY = "live_bench_rerun_account"
CALLBACK_KEY = "bench-rerun-callback-key-0123456789"


def env_for(redis_url: str, api_url: str) -> dict[str, str]:
    """The environment of the command and the workers: this Redis, the simulator, the no-op handler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALE_", "REDIS_URL", "CALLBACK_"))}
    env.update(
        REDIS_URL=redis_url,
        SCALE_CALLBACK_AUTH_KEY=CALLBACK_KEY,
        CALLBACK_HANDLERS="bench.handlers",
        SCALE_API_URL=api_url,
        SCALE_API_KEY=API_KEY,
    )
    return env


def one_run(conn: redis.Redis, env: dict[str, str], tasks: int, workers: int) -> tuple[float, float, str]:
    """The command's seconds, the seconds until every rerun job ran, and the command's summary line."""
    done_before = stats.totals(conn).get("rerun_job|done", 0.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "workers"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    try:
        time.sleep(2.0)  # the workers start (imports, registration) before the clock does
        started = time.perf_counter()
        command = subprocess.run(
            [sys.executable, "-m", "callback_server", "rerun", "bench.handlers.noop", "--yes"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        queued_in = time.perf_counter() - started
        if command.returncode != 0:
            raise RuntimeError(f"rerun failed: {command.stdout[-2000:]}{command.stderr[-2000:]}")
        while stats.totals(conn).get("rerun_job|done", 0.0) - done_before < tasks:
            time.sleep(0.05)
        ran_in = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    return queued_in, ran_in, command.stdout.strip().splitlines()[-1]


def main() -> None:
    """Measure and print one line per run, then the ranges."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp) / "redis")
        server.start()
        conn = redis.Redis.from_url(server.url)
        settings = SimSettings(
            callback_auth_key=SimSecret(CALLBACK_KEY),
            completion_delay=10**6,
            faults=("drop",),
            default_callback_url="http://127.0.0.1:9/callback",
            data_path=str(Path(tmp) / "sim.sqlite3"),
        )
        try:
            with SimServer(settings, start_scheduler=False) as sim:
                made = time.perf_counter()
                make_tasks(sim, API_KEY, options.tasks)
                print(f"{options.tasks} completed tasks in the simulator ({time.perf_counter() - made:.1f} s)")
                env = env_for(server.url, sim.api_url)
                queued, ran = [], []
                for n in range(options.runs):
                    queued_in, ran_in, line = one_run(conn, env, options.tasks, options.workers)
                    queued.append(options.tasks / queued_in)
                    ran.append(options.tasks / ran_in)
                    print(
                        f"run {n + 1}: {line}\n  command {queued_in:.2f} s ({queued[-1]:.0f} tasks/s listed and "
                        f"queued); every job run after {ran_in:.2f} s ({ran[-1]:.0f} tasks/s end to end, "
                        f"{options.workers} worker process{'es' if options.workers > 1 else ''})"
                    )
                print(
                    f"listed and queued: {min(queued):.0f}-{max(queued):.0f} tasks/s; "
                    f"end to end: {min(ran):.0f}-{max(ran):.0f} tasks/s"
                )
        finally:
            conn.close()
            server.stop()


if __name__ == "__main__":
    main()

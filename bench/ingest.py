"""Ingest benchmark: bare Flask, a durable-ack floor, naive validate+enqueue, and the real endpoint.

Run: ``.venv/bin/python -m bench.ingest [--duration 15] [--connections 32]``. Needs ``wrk``
(Debian package). Each request carries a ~1 KB categorization callback with a unique task
id, so every one is a new delivery (the real app's dedup is exercised, never short-cut).
Prints req/s, p50 and p99 for each and the ratios to the bare route.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import redis

from bench import start_web, wait_for_web
from callback_server.embedded import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent

KEY = "bench-callback-key"
APPS = {
    "bare": "bench.apps:bare()",
    "floor": "bench.apps:floor()",
    "naive": "bench.apps:naive()",
    "real": "callback_server.web:create_app()",
}

WRK_SCRIPT = r"""
local template = [[%s]]
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["scale-callback-auth"] = "%s"
end
function request()
  counter = counter + 1
  local task_id = string.format("bench%%02d%%012d", id, counter)
  return wrk.format(nil, nil, nil, string.gsub(template, "TASKID", task_id))
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def callback_body() -> str:
    """A ~1 KB categorization callback with TASKID where the task id goes."""
    task = {
        "task_id": "TASKID",
        "completed_at": "2016-06-23T21:54:44.904Z",
        "created_at": "2016-06-23T20:08:31.573Z",
        "callback_url": "https://example.com/callback",
        "type": "categorization",
        "status": "completed",
        "instruction": "Is this object red or blue? Look closely at the main object in the photo and ignore the "
        "background; if several objects are present, answer for the largest one.",
        "urgency": "day",
        "params": {
            "attachment_type": "image",
            "attachment": "https://example.com/images/0001/very/long/path/to/the/attachment/tomato.jpg",
            "categories": ["red", "blue", "green", "yellow", "other"],
        },
        "response": {"category": "red"},
        "metadata": {"batch": "2016-06-23", "source": "bench", "customer_ref": "c-1234567890"},
    }
    body = json.dumps({"task": task, "response": {"category": "red"}, "task_id": "TASKID"})
    return body


def server_cpu(pid: int) -> float:
    """User and system CPU seconds of a gunicorn master and its workers so far."""
    master = psutil.Process(pid)
    total = 0.0
    for process in [master, *master.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def redis_cpu(conn: redis.Redis) -> float:
    """User and system CPU seconds the Redis server has spent so far (it shares the machine's cores)."""
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_wrk(url: str, script: Path, duration: int, connections: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    total, micros, p50, p99, errors = (int(x) for x in match.groups())
    return {
        "rps": total / (micros / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "errors": errors,
        "requests": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--web-concurrency", default="", help="WEB_CONCURRENCY (default: gunicorn.conf.py's)")
    parser.add_argument("--gunicorn-args", default="", help="extra gunicorn arguments, the same for all three")
    parser.add_argument("--apps", default=",".join(APPS), help="which of bare,naive,real to run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp) / "redis")
        server.start()
        script = Path(tmp) / "callback.lua"
        body = callback_body()
        script.write_text(WRK_SCRIPT % (body, KEY))
        print(
            f"body size {len(body.replace('TASKID', 'bench00000000000001'))} bytes, "
            f"{args.connections} connections, {args.duration} s each, "
            f"WEB_CONCURRENCY={args.web_concurrency or 'default'}, gunicorn args {args.gunicorn_args!r}"
        )
        try:
            for name, target in APPS.items():
                if name not in args.apps.split(","):
                    continue
                redis.Redis.from_url(server.url).flushall()
                port = free_port()
                env = {**os.environ, "REDIS_URL": server.url, "SCALE_CALLBACK_AUTH_KEY": KEY, "LOG_LEVEL": "warning"}
                if args.web_concurrency:
                    env["WEB_CONCURRENCY"] = args.web_concurrency
                proc = start_web(env, port, *args.gunicorn_args.split(), app=target)
                try:
                    url = f"http://127.0.0.1:{port}/callback"
                    wait_for_web(proc, url, method="POST")  # the comparison apps have no /healthz
                    run_wrk(url, script, 2, args.connections, args.threads)  # warm-up
                    redis.Redis.from_url(server.url).flushall()
                    before = server_cpu(proc.pid)
                    redis_before = redis_cpu(redis.Redis.from_url(server.url))
                    results[name] = run_wrk(url, script, args.duration, args.connections, args.threads)
                    # CPU seconds the server processes spent, per request: steadier than req/s on a
                    # shared machine, and what the ack path's costs add up to.
                    results[name]["cpu_us"] = (server_cpu(proc.pid) - before) / results[name]["requests"] * 1e6
                    conn = redis.Redis.from_url(server.url)
                    results[name]["redis_us"] = (redis_cpu(conn) - redis_before) / results[name]["requests"] * 1e6
                    results[name]["queued"] = sum(conn.llen(f"rq:queue:{q}") for q in ("callbacks", "naive", "floor"))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
        finally:
            server.stop()
    bare = results.get("bare") or next(iter(results.values()))
    print(
        f"{'route':<6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'jobs':>8} "
        f"{'x bare rps':>10} {'x bare p99':>10} {'cpu us/req':>10} {'redis us':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:<6} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7.0f} "
            f"{r['queued']:>8.0f} {r['rps'] / bare['rps']:>10.2f} {r['p99_ms'] / bare['p99_ms']:>10.2f} "
            f"{r['cpu_us']:>10.0f} {r['redis_us']:>8.0f}"
        )


if __name__ == "__main__":
    main()

"""Worker benchmark: no-op handler throughput and POST-to-handler latency.

Run: ``.venv/bin/python -m bench.workers [--jobs 3000] [--processes 2]``.

Throughput: the same jobs (real deliveries, queued through the real accept path) drained by
P processes of each kind: our CallbackWorker (RQ's forking Worker as shipped, with its
heartbeat and death penalty), RQ's plain forking Worker, RQ's SimpleWorker (in-process, no
crash recovery: for scale only), and a bare redis-py BLPOP loop as the floor. Jobs/s is
counted from the first job's start to the last job's end (RQ's own timestamps), so process
start-up is left out.

Latency: the real gunicorn app and ``python -m workers`` with WORKER_PROCESSES=P (RQ's
WorkerPool, scheduler included, as on a dyno), a steady POST rate, and the time from just
before each POST to the start of its handler.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests

from bench import start_web, wait_for_web
from bench.handlers import LATENCY_KEY
from bench.ingest import callback_body
from callback_server import ledger
from callback_server.config import Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.embedded import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent

KEY = "bench-callback-key"


def env_for(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": url,
        "SCALE_CALLBACK_AUTH_KEY": KEY,
        "CALLBACK_HANDLERS": "bench.handlers",
        "LOG_LEVEL": "warning",
    }


def fill(url: str, queue_name: str, jobs: int) -> None:
    conn = redis.Redis.from_url(url)
    settings = Settings.from_env({"REDIS_URL": url, "SCALE_CALLBACK_AUTH_KEY": KEY, "CALLBACK_QUEUE": queue_name})
    deliveries = DeliveryQueue.from_settings(settings, conn)
    template = callback_body()
    pipe_batch = []
    for i in range(jobs):
        body = json.loads(template.replace("TASKID", f"{queue_name}{i:08d}"))
        pipe_batch.append(Delivery.from_body(body, mode="live"))
    for delivery in pipe_batch:
        deliveries.accept(delivery)


def job_span(url: str, queue_name: str) -> tuple[int, float]:
    """(finished jobs, seconds from the first start to the last end), read from the delivery ledger.

    Finished jobs are deleted at once (RESULT_TTL 0); each attempt's outcome entry in the ledger
    says when it ended (its id) and how long it ran.
    """
    conn = redis.Redis.from_url(url)
    starts, ends = [], []
    for key in conn.scan_iter(f"{ledger.PREFIX}:*", count=1000):
        for entry_id, fields in conn.xrange(key):
            if fields.get(b"t") or fields.get(b"y") != ledger.DONE.encode():
                continue  # an accept entry, or an attempt that did not finish the delivery
            ended = int(entry_id.split(b"-")[0]) / 1000
            ends.append(ended)
            starts.append(ended - float(fields.get(b"s") or 0) / 1000)
    return len(ends), (max(ends) - min(starts)) if ends else 0.0


KINDS = ("callback", "fork", "simple", "blpop")
"""The workers bench/run_worker.py runs: the shipped one, RQ's Worker and SimpleWorker, a bare BLPOP loop."""


def throughput(url: str, kind: str, jobs: int, processes: int) -> float:
    queue_name = f"bench{kind}"
    conn = redis.Redis.from_url(url)
    conn.flushall()
    if kind == "blpop":
        conn.rpush(f"bench:list:{queue_name}", *range(jobs))
        started = time.time()
    else:
        fill(url, queue_name, jobs)
    env = {**env_for(url), "CALLBACK_QUEUE": queue_name}
    procs = [
        subprocess.Popen([sys.executable, "-m", "bench.run_worker", kind, queue_name], env=env, cwd=ROOT)
        for _ in range(processes)
    ]
    for proc in procs:
        proc.wait(timeout=600)
    if kind == "blpop":
        # A pre-filled list drains in well under a second: time it from the fill, with start-up inside;
        # the floor is a floor either way.
        done = [line.decode().split() for line in conn.lrange("bench:blpop:done", 0, -1)]
        total = sum(int(count) for count, _ in done)
        return total / (max(float(t) for _, t in done) - started - 1.0)  # minus the final 1 s BLPOP timeout
    finished, span = job_span(url, queue_name)
    if finished != jobs:
        raise RuntimeError(f"{kind}: {finished} of {jobs} jobs finished")
    return jobs / span


def latency(url: str, processes: int, rate: float, seconds: float) -> tuple[float, float, int]:
    conn = redis.Redis.from_url(url)
    conn.flushall()
    port = free_port()
    env = env_for(url)
    web = start_web(env, port)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "workers"],
            cwd=ROOT,
            env={**env, "WORKER_PROCESSES": str(processes)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    url_cb = f"http://127.0.0.1:{port}/callback"
    try:
        wait_for_web(web, f"http://127.0.0.1:{port}/healthz")
        time.sleep(2)  # let the workers import and block on the queue
        template = json.loads(callback_body())
        total = int(rate * seconds)
        threads = 4
        session_local = threading.local()

        def send(index: int) -> None:
            session = getattr(session_local, "s", None) or requests.Session()
            session_local.s = session
            body = json.loads(json.dumps(template).replace("TASKID", f"lat{index:08d}"))
            body["task"]["metadata"]["sent_at"] = time.time()
            session.post(
                url_cb,
                data=json.dumps(body),
                headers={"scale-callback-auth": KEY, "Content-Type": "application/json"},
                timeout=10,
            )

        def pace(offset: int) -> None:
            start = time.monotonic()
            for i in range(offset, total, threads):
                target = start + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                send(i)

        runners = [threading.Thread(target=pace, args=(k,)) for k in range(threads)]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
        end = time.monotonic() + 30
        while conn.llen(LATENCY_KEY) < total and time.monotonic() < end:
            time.sleep(0.1)
        values = sorted(float(v) for v in conn.lrange(LATENCY_KEY, 0, -1))
        p50 = statistics.median(values)
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return p50, p99, len(values)
    finally:
        for proc in [web, *workers]:
            proc.terminate()
        for proc in [web, *workers]:
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="POSTs per second in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"which of {', '.join(KINDS)} to run")
    args = parser.parse_args()
    unknown = sorted(set(args.kinds.split(",")) - set(KINDS))
    if unknown:
        parser.error(f"unknown --kinds {', '.join(unknown)}: expected some of {', '.join(KINDS)}")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp) / "redis")
        server.start()
        try:
            results = {kind: throughput(server.url, kind, args.jobs, args.processes) for kind in args.kinds.split(",")}
            print(f"throughput, {args.jobs} no-op jobs, {args.processes} processes each")
            fork = results.get("fork")
            for kind, rate in results.items():
                ratio = f"{rate / fork:6.2f}x fork" if fork else ""
                print(f"  {kind:<9} {rate:9.0f} jobs/s  {ratio}")
            p50, p99, n = latency(server.url, args.processes, args.rate, args.seconds)
            print(
                f"POST-to-handler latency at {args.rate:.0f}/s for {args.seconds:.0f} s ({n} callbacks, "
                f"WORKER_PROCESSES={args.processes}): p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()

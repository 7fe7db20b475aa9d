"""Slow-client benchmark: are callbacks still answered while many connections trickle their headers?

Run: ``.venv/bin/python -m bench.slowloris [--slow 50] [--duration 15] [--gunicorn-args "..."]``.

It starts a private Redis and the receiver under the shipped gunicorn.conf.py (plus any extra
gunicorn arguments, e.g. ``--worker-class sync`` to compare), opens ``--slow`` connections on
loopback that each send a request line and then one header byte per ``--trickle`` seconds (no
key needed: this is what any client on the internet can do; one the server closes is reopened at
once, so that many stay open throughout), and meanwhile times legitimate
traffic: a new callback (valid key, unique task) and a ``/healthz`` every ``--interval``
seconds. Everything is bounded in count and time and stops by itself.

Prints, for callbacks and health checks apart: probes, answered within 1 s, p50, p99, max, and
failures (no answer within ``--probe-timeout``, or not 200).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench import start_web, wait_for_web
from callback_server.embedded import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent

KEY = "bench-callback-key"
BOUND = 1.0
"""The target: every legitimate request answered within this many seconds."""


def callback_body(task_id: str) -> bytes:
    """A small valid categorization callback for ``task_id``."""
    task = {
        "task_id": task_id,
        "type": "categorization",
        "status": "completed",
        "created_at": "2016-06-23T20:08:31.573Z",
        "completed_at": "2016-06-23T21:54:44.904Z",
        "callback_url": "https://example.com/callback",
        "instruction": "Red or blue?",
        "params": {"attachment_type": "text", "attachment": "tomato", "categories": ["red", "blue"]},
        "response": {"category": "red"},
    }
    return json.dumps({"task": task, "response": {"category": "red"}, "task_id": task_id}).encode()


class SlowClients:
    """``count`` connections that trickle an endless header, one byte at a time, until stopped.

    A connection the server closes is opened again at once, so ``count`` stay open (or
    opening) throughout, as a determined client would keep them.
    """

    def __init__(self, port: int, count: int, trickle: float) -> None:
        self.port = port
        self.count = count
        self.trickle = trickle
        self.sockets: list[socket.socket] = []
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(b"POST /callback HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        return sock

    def start(self) -> None:
        """Connect all of them and start trickling."""
        self.sockets = [self._open() for _ in range(self.count)]
        self._thread.start()

    @staticmethod
    def _closed(sock: socket.socket) -> bool:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(65536) == b""  # an answer (a 400, a timeout page) also ends it soon
        except OSError:
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.trickle):
            for index, sock in enumerate(self.sockets):
                try:
                    if not self._closed(sock):
                        sock.send(b"a")
                        continue
                except OSError:
                    pass
                self.closed_by_server += 1
                sock.close()
                try:
                    self.sockets[index] = self._open()
                except OSError:
                    self.sockets[index] = socket.socket()  # not connected: retried on the next tick

    def stop(self) -> None:
        """Stop trickling and close every connection."""
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def probe(base: str, duration: float, interval: float, timeout: float) -> dict[str, list[float | None]]:
    """Time a new callback and a health check every ``interval`` seconds for ``duration`` seconds."""
    results: dict[str, list[float | None]] = {"callback": [], "healthz": []}
    session_headers = {"scale-callback-auth": KEY, "Content-Type": "application/json"}
    deadline = time.monotonic() + duration
    n = 0
    while time.monotonic() < deadline:
        n += 1
        for name in results:
            started = time.perf_counter()
            try:
                if name == "callback":
                    body = callback_body(f"slowloris{os.getpid()}-{n:06d}")
                    r = requests.post(f"{base}/callback", data=body, headers=session_headers, timeout=timeout)
                    ok = r.status_code == 200 and r.json()["status"] == "queued"
                else:
                    r = requests.get(f"{base}/healthz", timeout=timeout)
                    ok = r.status_code == 200
            except requests.RequestException:
                ok = False
            results[name].append(time.perf_counter() - started if ok else None)
        time.sleep(interval)
    return results


def summarize(name: str, samples: list[float | None]) -> str:
    """One line: probes, within the bound, p50, p99, max, failures."""
    ok = sorted(s for s in samples if s is not None)
    failed = len(samples) - len(ok)
    within = sum(1 for s in ok if s <= BOUND)
    if not ok:
        return f"{name:<9} {len(samples):>6} {within:>9} {'-':>8} {'-':>8} {'-':>8} {failed:>7}"
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
    return (
        f"{name:<9} {len(samples):>6} {within:>9} {statistics.median(ok) * 1000:>8.1f} "
        f"{p99 * 1000:>8.1f} {ok[-1] * 1000:>8.1f} {failed:>7}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=50, help="slow connections held open (at most 500)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of probing (at most 120)")
    parser.add_argument("--trickle", type=float, default=1.0, help="seconds between a slow client's bytes")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--probe-timeout", type=float, default=5.0)
    parser.add_argument("--web-concurrency", default="", help="WEB_CONCURRENCY (default: gunicorn.conf.py's)")
    parser.add_argument("--gunicorn-args", default="", help="extra gunicorn arguments, e.g. '--worker-class sync'")
    args = parser.parse_args()
    if not 0 <= args.slow <= 500 or not 0 < args.duration <= 120:
        sys.exit("--slow must be 0..500 and --duration 0..120 s: this benchmark stays bounded")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp) / "redis")
        server.start()
        port = free_port()
        env = {**os.environ, "REDIS_URL": server.url, "SCALE_CALLBACK_AUTH_KEY": KEY, "LOG_LEVEL": "warning"}
        if args.web_concurrency:
            env["WEB_CONCURRENCY"] = args.web_concurrency
        proc = start_web(env, port, *args.gunicorn_args.split())
        base = f"http://127.0.0.1:{port}"
        slow = SlowClients(port, args.slow, args.trickle)
        try:
            wait_for_web(proc, f"{base}/healthz")
            slow.start()
            time.sleep(1.0)  # let the server accept them: the point is what happens once it has
            results = probe(base, args.duration, args.interval, args.probe_timeout)
        finally:
            slow.stop()
            proc.terminate()
            proc.wait(timeout=30)
            server.stop()
    print(
        f"{args.slow} slow connections (one header byte per {args.trickle} s; closed by the server and "
        f"reopened {slow.closed_by_server} times), "
        f"WEB_CONCURRENCY={args.web_concurrency or 'default'}, gunicorn args {args.gunicorn_args!r}"
    )
    print(f"{'probe':<9} {'sent':>6} {'<= 1 s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>7}")
    for name, samples in results.items():
        print(summarize(name, samples))


if __name__ == "__main__":
    main()

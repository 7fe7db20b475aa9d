"""Ack cost, in process: the CPU one callback costs each route, and the receiver's, piece by piece.

Run: ``.venv/bin/python -m bench.ack_cost [--requests 4000] [--no-gevent]``. No HTTP server and no
wrk: WSGI environs are built up front and handed to each app in turn, against a private
redis-server, with the standard library monkey-patched by gevent as gunicorn.conf.py does (the
shipped configuration; ``--no-gevent`` for the plain one). CPU is ``time.process_time`` (this
process only; the Redis column is the server's own CPU per request, read from INFO).

The pieces are timed by wrapping the receiver's own functions, so they include the cold caches
of a real request (they cost two to three times what a loop over one function measures) and
a little of the wrapping itself. Nested pieces are indented under the piece that calls them.
"""

from __future__ import annotations

import argparse
import sys

if __name__ == "__main__" and "--no-gevent" not in sys.argv:
    import warnings

    from gevent import monkey

    # `python -m` imported the bench package first; nothing here uses TLS, so a late ssl patch is moot.
    warnings.filterwarnings("ignore", category=monkey.MonkeyPatchWarning)
    monkey.patch_all()

import collections  # after the patch, on purpose (as gunicorn.conf.py patches first)
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import redis

from bench.ingest import KEY, callback_body, redis_cpu
from callback_server.embedded import RedisProcess

PIECES = (
    # (depth, label, module path, attribute path): what is timed, in print order
    (0, "whole request (WSGI)", "", ""),
    (1, "the view", "", ""),
    (2, "request id", "callback_server.web.ingest", "_request_id"),
    (2, "the accept path (offer)", "callback_server.accept", "AcceptPath.offer"),
    (3, "parse + validate", "callback_server.accept", "load_callback_event"),
    (3, "identity, envelope", "callback_server.deliveries", "Delivery.from_body"),
    (4, "identity", "callback_server.deliveries", "delivery_id"),
    (3, "accept", "callback_server.deliveries", "DeliveryQueue.accept"),
    (4, "job fields", "callback_server.deliveries", "DeliveryQueue._varying"),
    (4, "counters owed", "callback_server.stats", "Tally.take"),
    (4, "the round trip", "callback_server.deliveries", "DeliveryQueue._run_accept"),
    (2, "answer", "callback_server.web.ingest", "_answer"),
    (3, "the log line", "callback_server.web.ingest", "log.info"),
    (3, "latency counted", "callback_server.stats", "Tally.add"),
)


def environs(body: str, count: int, prefix: str) -> list[dict[str, Any]]:
    """WSGI environs of ``count`` distinct callbacks (each a new delivery)."""
    made = []
    for index in range(count):
        raw = body.replace("TASKID", f"{prefix}{index:012d}").encode()
        made.append(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/callback",
                "SERVER_NAME": "bench",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(raw),
                "CONTENT_LENGTH": str(len(raw)),
                "CONTENT_TYPE": "application/json",
                "HTTP_SCALE_CALLBACK_AUTH": KEY,
            }
        )
    return made


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise RuntimeError(f"the app answered {status}")


def serve(app: Callable[..., Iterable[bytes]], requests: list[dict[str, Any]]) -> None:
    for environ in requests:
        b"".join(app(environ, _start_response))


class Pieces:
    """CPU seconds spent inside each wrapped function (``time.process_time``)."""

    def __init__(self) -> None:
        self.spent: collections.defaultdict[str, float] = collections.defaultdict(float)

    def wrap(self, module_name: str, path: str, label: str) -> None:
        owner: Any = sys.modules[module_name]
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        inner = getattr(owner, name)
        spent = self.spent

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - started

        setattr(owner, name, timed)

    def timed_app(self, app: Any, label: str) -> Callable[..., Iterable[bytes]]:
        spent = self.spent

        def timed(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            started = time.process_time()
            try:
                return list(app(environ, start_response))
            finally:
                spent[label] += time.process_time() - started

        return timed


def script_us(conn: redis.Redis) -> float:
    """Redis's own time per script call since the last CONFIG RESETSTAT (the accept script, for the receiver).

    Read from INFO commandstats, so it leaves out parsing and network, and holds steadier than the
    server's CPU share on a loaded machine.
    """
    stats = conn.info("commandstats")
    calls = [stats[name] for name in ("cmdstat_evalsha", "cmdstat_eval") if name in stats]
    total = sum(float(c["usec"]) for c in calls)
    count = sum(int(c["calls"]) for c in calls)
    return total / count if count else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--no-gevent", action="store_true", help="leave the standard library unpatched")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp) / "redis")
        server.start()
        try:
            run(server.url, args.requests, gevent=not args.no_gevent)
        finally:
            server.stop()


def run(url: str, count: int, *, gevent: bool) -> None:
    os.environ.update(REDIS_URL=url, SCALE_CALLBACK_AUTH_KEY=KEY)
    from bench import apps
    from callback_server.logs import configure_logging
    from callback_server.web import create_app

    # The ack line is formatted and written as in production, to a sink that costs nothing more.
    configure_logging()
    sink = open(os.devnull, "w")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    conn = redis.Redis.from_url(url)
    body = callback_body()
    print(f"{count} callbacks of {len(body)} bytes per route, in process, gevent {'on' if gevent else 'off'}")
    print(f"{'route':<8} {'cpu us/req':>10} {'redis us/req':>12} {'script us/call':>14}")
    receiver: Any = None
    for name, build in (("bare", apps.bare), ("floor", apps.floor), ("real", create_app)):
        app = build()
        serve(app, environs(body, 300, f"warm{name}"))
        conn.flushall()
        requests = environs(body, count, f"run{name}")
        conn.config_resetstat()
        redis_before, started = redis_cpu(conn), time.process_time()
        serve(app, requests)
        cpu = (time.process_time() - started) / count * 1e6
        redis_us = (redis_cpu(conn) - redis_before) / count * 1e6
        print(f"{name:<8} {cpu:>10.0f} {redis_us:>12.0f} {script_us(conn):>14.1f}")
        receiver = app
    pieces = Pieces()
    for _, label, module_name, path in PIECES:
        if module_name:
            pieces.wrap(module_name, path, label)
    view = receiver.view_functions["ingest.receive"]

    def timed_view(*view_args: Any, **view_kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return view(*view_args, **view_kwargs)
        finally:
            pieces.spent["the view"] += time.process_time() - started

    receiver.view_functions["ingest.receive"] = timed_view
    timed = pieces.timed_app(receiver.wsgi_app, "whole request (WSGI)")
    serve(timed, environs(body, 300, "warmpieces"))
    pieces.spent.clear()
    serve(timed, environs(body, count, "pieces"))
    print("\nthe receiver, piece by piece (CPU us per callback, timing included):")
    for depth, label, _, _ in PIECES:
        print(f"  {'  ' * depth}{label:<{34 - 2 * depth}} {pieces.spent[label] / count * 1e6:>7.1f}")


if __name__ == "__main__":
    main()

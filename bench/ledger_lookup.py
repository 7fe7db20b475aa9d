"""What one console view of a delivery costs Redis, through the ledger's index and by scanning.

Run: ``.venv/bin/python -m bench.ledger_lookup [--sizes 2000 60000] [--views 30]``. For each size, a
private Redis gets that many deliveries through the real accept path (one task each, every tenth
task twice: a later audit) and an outcome entry for each, as a worker writes it. Then a delivery
page's reads are timed for random deliveries: the delivery with its attempts and the task's other
deliveries. Once through the index (this version), once by scanning the streams as the ledger did
before (``Ledger._matching`` over every bucket). Redis's own CPU per view is the figure that
matters: the ack path shares that server.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.ingest import redis_cpu
from callback_server import ledger
from callback_server.config import Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.embedded import RedisProcess
from tests.support.fixtures import load_fixture


def fill(conn: redis.Redis, settings: Settings, size: int) -> list[tuple[str, str]]:
    """``size`` deliveries and their outcome entries; their (delivery id, task id) pairs."""
    queue = DeliveryQueue.from_settings(settings, conn)
    template = load_fixture("categorization")
    pairs = []
    for n in range(size):
        body: dict[str, Any] = {**template, "task": dict(template["task"])}
        task_id = f"task-{n // 2 if n % 20 < 2 else n:08d}"  # every tenth task has a second delivery
        body["task_id"] = body["task"]["task_id"] = task_id
        body["response"] = body["task"]["response"] = {"category": f"red-{n}"}
        delivery = Delivery.from_body(body, mode="live")
        assert queue.accept(delivery)
        pairs.append((delivery.delivery_id, task_id))
        if n % 500 == 499 or n == size - 1:
            with conn.pipeline(transaction=False) as pipe:
                for delivery_id, _ in pairs[-(n % 500 + 1) :]:
                    ledger.record_outcome(pipe, settings.ledger_ttl, delivery_id, ledger.DONE, 1, 3.0, ["app.h"])
                pipe.execute()
    return pairs


def indexed_view(book: ledger.Ledger, delivery_id: str, task_id: str) -> int:
    """A delivery page's ledger reads, as the console makes them now; the entries read."""
    entry = book.delivery(delivery_id)
    others = book.deliveries_of_task(task_id)
    assert entry is not None and entry.attempts and others
    return 1 + len(others)


def scanned_view(book: ledger.Ledger, delivery_id: str, task_id: str) -> int:
    """The same reads as the ledger made them before its index: every stream scanned, twice."""
    entries = list(book._matching(b"d", ledger.raw_id(delivery_id)))
    others = list(book._matching(b"t", task_id.encode()))
    assert entries and others
    return len(entries) + len(others)


def measure(conn: redis.Redis, book: ledger.Ledger, sample: list[tuple[str, str]], view: Any) -> tuple[float, float]:
    """Redis CPU ms and wall ms per view."""
    cpu, started = redis_cpu(conn), time.perf_counter()
    for delivery_id, task_id in sample:
        view(book, delivery_id, task_id)
    views = len(sample)
    return (redis_cpu(conn) - cpu) * 1000 / views, (time.perf_counter() - started) * 1000 / views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 60000])
    parser.add_argument("--views", type=int, default=30)
    args = parser.parse_args()
    print("| deliveries in the ledger | view | Redis CPU per view | wall per view |")
    print("|---|---|---|---|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            server = RedisProcess(Path(folder))
            server.start()
            try:
                conn = redis.Redis.from_url(server.url)
                settings = Settings.from_env(
                    {"REDIS_URL": server.url, "SCALE_CALLBACK_AUTH_KEY": "bench-ledger-key-0123"}
                )
                pairs = fill(conn, settings, size)
                book = ledger.Ledger(conn, ttl=settings.ledger_ttl)
                sample = random.Random(size).sample(pairs, min(args.views, len(pairs)))
                for name, view in (("indexed (now)", indexed_view), ("scanned (before)", scanned_view)):
                    cpu_ms, wall_ms = measure(conn, book, sample, view)
                    print(f"| {size:,} | {name} | {cpu_ms:.2f} ms | {wall_ms:.2f} ms |", flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()

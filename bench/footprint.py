"""Redis footprint: bytes per delivery by key family, in flight, just finished and in steady state.

Run: ``.venv/bin/python -m bench.footprint [--deliveries 5000]``. Drives N ~1 KB categorization
callbacks (each a new delivery) through the real receiver (gunicorn, shipped config) while no
worker runs, measures Redis (``MEMORY USAGE`` of every key, by family), starts a real worker,
waits until every delivery is processed, and measures again. Steady state is each family's
bytes per delivery times how long it is kept, in days: what one delivery a day of traffic
costs. From that: the Redis plan that 10 k, 100 k and 1 M deliveries a day need.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import redis
import requests

from bench import start_web
from bench.ingest import callback_body
from callback_server import defaults, ledger
from callback_server.config import Settings
from callback_server.deliveries import SEEN_PERIOD
from callback_server.embedded import RedisProcess, free_port

ROOT = Path(__file__).resolve().parent.parent

KEY = "bench-footprint-callback-key"
DAY = 86400

FAMILIES = (
    ("rq:results:", "RQ result streams"),
    ("rq:job:", "RQ job hashes"),
    ("rq:queue:", "RQ queues"),
    ("rq:", "RQ registries and workers"),
    ("scb:done:", "effects records"),
    ("scb:seen:", "delivery identities"),
    ("scb:ledger:", "delivery ledger"),
    ("scb:ledger_ix:", "ledger index"),
    ("scb:stats:", "counters (per minute, not per delivery)"),
    ("scb:", "other scb keys"),
    ("", "anything else"),
)
"""Key prefixes, most specific first; a key belongs to the first family whose prefix it has."""

HEROKU_PLANS_MB = (
    ("mini", 25),
    ("premium-0", 50),
    ("premium-1", 100),
    ("premium-2", 250),
    ("premium-3", 500),
    ("premium-4", 750),
    ("premium-5", 1000),
    ("premium-6", 1750),
    ("premium-7", 7000),
    ("premium-9", 10000),
    ("premium-10", 25000),
    ("premium-12", 50000),
    ("premium-14", 100000),
)
"""Heroku Key-Value Store plans and their memory (MB) as Heroku lists them; check before buying."""

HEADROOM = 0.8
"""A plan fits when the steady state stays under this share of its memory (the headroom warning)."""


def family_of(key: str) -> str:
    """The family a key belongs to."""
    return next(prefix for prefix, _ in FAMILIES if key.startswith(prefix))


def measure(conn: redis.Redis) -> dict[str, int]:
    """Bytes by family: the sum of ``MEMORY USAGE`` (every element sampled) of every key."""
    sizes: dict[str, int] = defaultdict(int)
    for key in conn.scan_iter(count=1000):
        usage = conn.memory_usage(key, samples=0) or 0
        sizes[family_of(key.decode())] += usage
    return dict(sizes)


def retention_days(family: str, conn: redis.Redis, settings: Settings) -> float:
    """How long a delivery's share of a family is kept, in days (0: gone once processed)."""
    if family == "scb:seen:":
        return (settings.dedup_ttl + SEEN_PERIOD / 2) / DAY  # its bucket outlives it by half a bucket on average
    if family in ("scb:ledger:", "scb:ledger_ix:"):
        return (settings.ledger_ttl + ledger.PERIOD / 2) / DAY  # a stream expires LEDGER_TTL after its bucket ends
    ttls = [conn.ttl(key) for key in conn.scan_iter(match=f"{family}*", count=1000)]
    ttls = [t for t in ttls if t > 0]
    return (sum(ttls) / len(ttls)) / DAY if ttls else 0.0


def post_all(base: str, count: int) -> float:
    """POST ``count`` new deliveries; seconds taken."""
    body = callback_body()
    session = requests.Session()
    started = time.perf_counter()
    for number in range(count):
        answer = session.post(
            f"{base}/callback",
            data=body.replace("TASKID", f"footprint{number:012d}"),
            headers={"scale-callback-auth": KEY, "Content-Type": "application/json"},
            timeout=10,
        )
        if answer.json() != {"status": "queued"}:
            raise RuntimeError(f"delivery {number} answered {answer.status_code} {answer.text}")
    return time.perf_counter() - started


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def plan_for(megabytes: float) -> str:
    """The smallest Heroku plan whose memory keeps ``megabytes`` under the headroom share."""
    for name, size in HEROKU_PLANS_MB:
        if megabytes <= size * HEADROOM:
            return f"{name} ({size:,} MB)"
    return "larger than any listed plan"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument(
        "--handlers",
        default="bench.handlers",
        help="CALLBACK_HANDLERS of the worker (add bench.audit_trail for a team's '*' handler)",
    )
    args = parser.parse_args()
    count = args.deliveries
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp) / "redis")
        server.start()
        env = {
            **os.environ,
            "REDIS_URL": server.url,
            "SCALE_CALLBACK_AUTH_KEY": KEY,
            "LOG_LEVEL": "warning",
            "CALLBACK_HANDLERS": args.handlers,
            "WEB_CONCURRENCY": "2",
        }
        settings = Settings.from_env(env)
        conn = redis.Redis.from_url(server.url)
        port = free_port()
        web = start_web(env, port)
        worker = None
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: _up(base), 30, "gunicorn")
            empty = measure(conn)
            seconds = post_all(base, count)
            time.sleep(1.5)  # the web processes' once-a-second counter flush
            in_flight = measure(conn)
            worker = subprocess.Popen(
                [sys.executable, "-m", "workers"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_until(
                lambda: (
                    conn.llen(f"rq:queue:{settings.callback_queue}") == 0
                    and not conn.zcard(f"rq:wip:{settings.callback_queue}")
                ),
                600,
                "the worker to drain the queue",
            )
            wait_until(lambda: _processed(conn, settings) >= count, 600, "every delivery to be processed")
            finished = measure(conn)
            retention = {family: retention_days(family, conn, settings) for family, _ in FAMILIES}
        finally:
            for proc in (worker, web):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
            server.stop()
    print(
        f"{count} deliveries of ~{len(callback_body())} B bodies, posted in {seconds:.1f} s; "
        f"DEDUP_TTL {settings.dedup_ttl} s, LEDGER_TTL {settings.ledger_ttl} s, RESULT_TTL {defaults.RESULT_TTL} s"
    )
    print()
    print("| key family | in flight B/delivery | just finished B/delivery | kept (days) | steady B/delivery/day |")
    print("|---|---|---|---|---|")
    steady_total = 0.0
    flight_total = finished_total = 0.0
    for family, label in FAMILIES:
        flight = (in_flight.get(family, 0) - empty.get(family, 0)) / count
        done = (finished.get(family, 0) - empty.get(family, 0)) / count
        per_delivery = family not in ("scb:stats:", "rq:")
        steady = done * retention[family] if per_delivery else 0.0
        if not (flight or done):
            continue
        flight_total += flight
        finished_total += done
        steady_total += steady
        kept = f"{retention[family]:.2f}" if per_delivery else "fixed"
        print(f"| `{family}*` {label} | {flight:,.0f} | {done:,.0f} | {kept} | {steady:,.0f} |")
    print(f"| **total** | {flight_total:,.0f} | {finished_total:,.0f} | | **{steady_total:,.0f}** |")
    # Not per delivery: Redis itself (~1 MB), the cumulative counters, a day of per-minute counters.
    fixed_mb = 1.0 + finished.get("scb:stats:", 0) * 1440 / max(_minutes_used(seconds), 1) / 1e6
    print()
    print("| deliveries a day | steady Redis (MB) | Heroku plan (steady state under 80 %) |")
    print("|---|---|---|")
    for per_day in (10_000, 100_000, 1_000_000):
        megabytes = per_day * steady_total / 1e6 + fixed_mb
        print(f"| {per_day:,} | {megabytes:,.0f} | {plan_for(megabytes)} |")
    print(f"\n(includes ~{fixed_mb:.1f} MB that does not grow with traffic: Redis, a day of per-minute counters)")


def _minutes_used(seconds: float) -> int:
    """How many per-minute counter hashes a run of this length wrote."""
    return int(seconds // 60) + 2


def _up(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def _processed(conn: redis.Redis, settings: Settings) -> int:
    return int(float(conn.hget("scb:stats:total", "job|done") or 0))


if __name__ == "__main__":
    main()

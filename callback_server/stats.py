"""Counters in Redis: what every process counts, summed across them, for /metrics and the charts.

Heroku cannot scrape a worker dyno, and gunicorn's processes would each report their own
numbers, so every process adds to the same Redis hashes:

- ``scb:stats:total``: cumulative counters (Prometheus counters and histograms), one field per
  label set, e.g. ``delivery|queued|categorization|completed|live``;
- ``scb:stats:m:<minute>``: per-minute counts of the few series the console charts, kept a day.

Nothing here costs the ack path a round trip of its own: the accept script counts its outcome,
and what only the web process knows afterwards (its ack latency, a 503 while Redis was away, a
quarantined body) waits in a per-process :class:`Tally` and rides along with the next accept.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from typing import Any

import redis

from callback_server.schemas import SCALE_TYPES

TOTAL_KEY = "scb:stats:total"
"""The hash of cumulative counters."""

MINUTE_PREFIX = "scb:stats:m"
"""Per-minute hashes of the charted series (``scb:stats:m:<unix minute>``)."""

MINUTE_TTL = 25 * 3600
"""How long a minute's counts are kept: the console charts the last day."""

SEP = "|"
"""Separates a counter's name from its label values in a field name."""

ACK_BUCKETS_MS = (1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 500, 1000, 2500, 5000)
"""Upper bounds (ms) of the ack latency histogram; a last, unbounded bucket follows."""

HANDLER_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)
"""Upper bounds (s) of the handler duration histogram; a last, unbounded bucket follows."""

HEADROOM_CHECK_INTERVAL = 60.0
"""Seconds between a web process's looks at Redis memory (and so between its warnings)."""

FLUSH_INTERVAL = 1.0
"""Seconds between a process's deliveries of counts that no accept carried along."""

OTHER_TYPE = "other"
"""The counters' label for a task type Scale does not name: a sender's made-up types add no series."""


def type_label(task_type: str) -> str:
    """A task type as counters label it: itself when Scale names it, else ``other`` (the ledger and logs keep it)."""
    return task_type if task_type in SCALE_TYPES else OTHER_TYPE


def field(name: str, *labels: object) -> str:
    """The hash field of one counter and its label values."""
    return SEP.join((name, *(str(label) for label in labels)))


def minute_key(minute: int) -> str:
    """The per-minute hash of a Unix minute."""
    return f"{MINUTE_PREFIX}:{minute}"


def current_minute(now: float | None = None) -> int:
    """The Unix minute of ``now``."""
    return int((time.time() if now is None else now) // 60)


def bucket(bounds: tuple[float, ...], value: float) -> str:
    """The histogram bucket (its upper bound, or ``+Inf``) a value falls in."""
    index = bisect.bisect_left(bounds, value)
    return "+Inf" if index == len(bounds) else f"{bounds[index]:g}"


_ACK_SLOTS = [bucket(ACK_BUCKETS_MS, value) for value in (*ACK_BUCKETS_MS, float("inf"))]
_ACK_FIELDS = [(field("ack_bucket", slot), field("ack", slot)) for slot in _ACK_SLOTS]
_ACK_SUM = field("ack_sum_ms")


def ack_latency(latency_ms: float) -> tuple[dict[str, float], dict[str, float]]:
    """The increments of one answered callback's latency: the histogram, and the minute's bucket.

    No count of its own: the histogram's count is the sum of its buckets (one increment less
    for the accept script to carry on every callback).
    """
    # The fields of each bucket are made once: this runs on every callback.
    total_field, minute_field = _ACK_FIELDS[bisect.bisect_left(ACK_BUCKETS_MS, latency_ms)]
    return {total_field: 1.0, _ACK_SUM: latency_ms}, {minute_field: 1.0}


def outcome_counts(outcome: str, mode: str) -> tuple[dict[str, float], dict[str, float]]:
    """The increments of an outcome the accept script does not count (quarantined, unavailable)."""
    return {field("delivery", outcome, "-", "-", mode): 1.0}, {field("out", outcome): 1.0}


def _add(into: dict[str, float], amounts: dict[str, float]) -> None:
    for name, amount in amounts.items():
        into[name] = into.get(name, 0.0) + amount


class Tally:
    """Increments this process owes Redis, sent along with its next write (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: dict[str, float] = {}
        self._minutes: dict[int, dict[str, float]] = {}
        self._flusher: threading.Thread | None = None
        self._pid = 0
        self._stopped = threading.Event()

    def add(self, total: dict[str, float], minute: dict[str, float], now: float | None = None) -> None:
        """Owe these increments (``minute``'s to the current minute)."""
        at = current_minute(now)
        with self._lock:
            _add(self._total, total)
            _add(self._minutes.setdefault(at, {}), minute)

    def take(self) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
        """Everything owed, now considered sent; :meth:`give_back` it if the write fails."""
        with self._lock:
            total, minutes = dict(self._total), {m: dict(c) for m, c in self._minutes.items()}
            self._total.clear()
            self._minutes.clear()
        return total, minutes

    def give_back(self, total: dict[str, float], minutes: dict[int, dict[str, float]]) -> None:
        """Owe again what a failed write did not deliver."""
        with self._lock:
            _add(self._total, total)
            for minute, counts in minutes.items():
                _add(self._minutes.setdefault(minute, {}), counts)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._total or self._minutes)

    def flush_in_background(self, connection: redis.Redis, interval: float = FLUSH_INTERVAL) -> None:
        """Deliver what is owed every ``interval`` seconds from a thread, when no accept carried it.

        Started lazily in each serving process (a thread does not survive gunicorn's fork); it is
        called on every callback, so the common case is one comparison, without the lock.
        """
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._flusher = threading.Thread(
                target=self._flush_forever, args=(connection, interval), name="stats-flush", daemon=True
            )
            self._flusher.start()

    def _flush_forever(self, connection: redis.Redis, interval: float) -> None:
        # Imported here: connection imports config, which the stats module must not need.
        from callback_server.connection import warn_if_memory_high

        next_check = 0.0
        while not self._stopped.wait(interval):
            try:
                flush(connection, self)
            except redis.RedisError:
                pass  # still owed; the next accept or flush carries it (a full Redis refuses it too)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + HEADROOM_CHECK_INTERVAL
                try:
                    warn_if_memory_high(connection)
                except redis.RedisError:
                    pass

    def stop(self) -> None:
        """Stop the background flush (what is still owed is dropped with the tally)."""
        self._stopped.set()


def as_args(total: dict[str, float], minutes: dict[int, dict[str, float]]) -> list[Any]:
    """The tally as the accept script's trailing arguments: counts, then ``field, amount`` pairs.

    Layout: n_total, (field, amount) * n_total, n_minutes, then per minute: minute, n, pairs.
    """
    args: list[Any] = [len(total)]
    for name, amount in total.items():
        args += [name, _number(amount)]
    args.append(len(minutes))
    for minute, counts in minutes.items():
        args += [minute, len(counts)]
        for name, amount in counts.items():
            args += [name, _number(amount)]
    return args


def _number(amount: float) -> str:
    return str(int(amount)) if float(amount).is_integer() else repr(float(amount))


def flush(connection: redis.Redis, tally: Tally) -> None:
    """Send what the tally owes in a pipeline of its own (when no accept comes to carry it)."""
    total, minutes = tally.take()
    if not total and not minutes:
        return
    try:
        pipe = connection.pipeline(transaction=False)
        apply(pipe, total, minutes)
        pipe.execute()
    except redis.RedisError:
        tally.give_back(total, minutes)
        raise


def apply(pipe: Any, total: dict[str, float], minutes: dict[int, dict[str, float]]) -> None:
    """Queue the increments of a tally on a pipeline (workers and the clock use this directly)."""
    for name, amount in total.items():
        pipe.hincrbyfloat(TOTAL_KEY, name, amount)
    for minute, counts in minutes.items():
        key = minute_key(minute)
        for name, amount in counts.items():
            pipe.hincrbyfloat(key, name, amount)
        pipe.expire(key, MINUTE_TTL)


def totals(connection: redis.Redis) -> dict[str, float]:
    """Every cumulative counter, by field."""
    return {name.decode(): float(value) for name, value in connection.hgetall(TOTAL_KEY).items()}


def minutes(connection: redis.Redis, count: int, now: float | None = None) -> list[tuple[int, dict[str, float]]]:
    """The last ``count`` minutes' counts, oldest first (one pipeline)."""
    last = current_minute(now)
    span = range(last - count + 1, last + 1)
    pipe = connection.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(minute_key(minute))
    rows = pipe.execute()
    return [
        (minute, {name.decode(): float(value) for name, value in row.items()})
        for minute, row in zip(span, rows, strict=True)
    ]


def quantile(counts: dict[str, float], prefix: str, bounds: tuple[float, ...], q: float) -> float | None:
    """The ``q`` quantile (upper bucket bound) of a histogram stored as ``prefix|<bound>`` fields."""
    per_bucket = [counts.get(field(prefix, f"{b:g}"), 0.0) for b in bounds] + [counts.get(field(prefix, "+Inf"), 0.0)]
    seen = sum(per_bucket)
    if not seen:
        return None
    running = 0.0
    for bound, amount in zip([*bounds, float("inf")], per_bucket, strict=True):
        running += amount
        if running >= q * seen:
            return bound
    return float("inf")


Increments = tuple[dict[str, float], dict[str, float]]
"""Increments of the cumulative counters, and of the current minute's."""


def handler_run(handler: str, task_type: str, outcome: str, seconds: float) -> Increments:
    """The increments of one handler run (``outcome``: done or failed): counts and duration histogram."""
    slot = bucket(HANDLER_BUCKETS_S, seconds)
    total = {
        field("handler_run", handler, type_label(task_type), outcome): 1.0,
        field("handler_bucket", handler, slot): 1.0,
        field("handler_sum_s", handler): seconds,
        field("handler_count", handler): 1.0,
    }
    return total, {field("run", outcome): 1.0}


def job_outcome(outcome: str) -> Increments:
    """The increments of a delivery's attempt as a whole: ``done``, ``retry`` (scheduled) or ``failed``."""
    return {field("job", outcome): 1.0}, {field("job", outcome): 1.0}


def rerun_job_outcome(outcome: str) -> Increments:
    """A rerun job's attempt (counted besides :func:`job_outcome`, so /metrics tells reruns apart)."""
    return {field("rerun_job", outcome): 1.0}, {}


def unhandled(task_type: str, event: str) -> Increments:
    """A delivery no handler asked for (recorded by the fallback)."""
    return {field("unhandled", type_label(task_type), event): 1.0}, {}


def merge(*parts: Increments) -> Increments:
    """Several increments as one (total, minute) pair."""
    total: dict[str, float] = {}
    minute: dict[str, float] = {}
    for part_total, part_minute in parts:
        _add(total, part_total)
        _add(minute, part_minute)
    return total, minute


def apply_now(pipe: Any, increments: Increments, now: float | None = None) -> None:
    """Queue increments for the current minute on a pipeline (workers, the clock)."""
    total, minute = increments
    apply(pipe, total, {current_minute(now): minute} if minute else {})

"""``GET /metrics``: Prometheus text exposition of what every process counted, read from Redis.

Heroku cannot scrape a worker dyno, and each gunicorn process would report only its own
numbers, so nothing here is per process: the counters and histograms are the shared hash of
:mod:`callback_server.stats` (every web and worker process adds to it), and the gauges (queue
depth, backlog age, RQ's registries, workers, Redis memory, the latest reconciliation runs) are
read from Redis at scrape time. A scrape costs two pipelined round trips and a small hash read.

The route exists only when ``METRICS_TOKEN`` is set, and answers only to
``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from callback_server import stats
from callback_server.exceptions import StoreUnavailableError
from callback_server.status import Status, read_status
from callback_server.times import parse_instant
from callback_server.web.state import receiver_state

bp = Blueprint("metrics", __name__)

PREFIX = "scb"
"""Every metric's name starts with this (scale callbacks)."""


@dataclass(frozen=True)
class CounterSpec:
    """How the stats fields ``<name>|<label>|...`` become one Prometheus counter."""

    metric: str
    help: str
    labels: tuple[str, ...]


COUNTERS: Mapping[str, CounterSpec] = {
    "delivery": CounterSpec(
        "deliveries",
        "Authenticated callbacks by outcome (queued, duplicate, quarantined, unavailable: answered "
        "503), task type, event and key mode; '-' where the body was not read as a task.",
        ("outcome", "type", "event", "mode"),
    ),
    "handler_run": CounterSpec(
        "handler_runs", "Handler runs by handler, task type and outcome (done, failed).", ("handler", "type", "outcome")
    ),
    "job": CounterSpec(
        "jobs",
        "Delivery job attempts by outcome: done, retry (a handler failed, retried later), failed (no try "
        "left: in the failed registry).",
        ("outcome",),
    ),
    "rerun_job": CounterSpec(
        "rerun_jobs",
        "Rerun job attempts by outcome (done, retry, failed); also counted in scb_jobs_total, so callbacks' "
        "own attempts are the difference.",
        ("outcome",),
    ),
    "rerun_task": CounterSpec("rerun_tasks", "Tasks a rerun queued for the named handlers (queued).", ("outcome",)),
    "unhandled": CounterSpec(
        "unhandled", "Deliveries no handler asked for (recorded in scb:unhandled).", ("type", "event")
    ),
    "reconcile_run": CounterSpec(
        "reconcile_runs", "Reconciliation runs by scope and outcome (complete, incomplete).", ("scope", "outcome")
    ),
    "reconcile_task": CounterSpec(
        "reconcile_tasks",
        "Tasks a reconciliation run looked at, by event and outcome (queued: its callback had never been accepted).",
        ("event", "outcome"),
    ),
}
"""The counters of the stats hash that have a name of their own; any other one is exposed as
``scb_counter_total{name=..., labels=...}``, so a counter added later is never invisible."""

HISTOGRAM_PARTS = {"ack_bucket", "ack_sum_ms", "handler_bucket", "handler_sum_s", "handler_count"}
"""The stats fields that make up the two histograms (not counters of their own)."""


def _split(fields: Mapping[str, float]) -> dict[str, list[tuple[list[str], float]]]:
    by_name: dict[str, list[tuple[list[str], float]]] = {}
    for field, value in fields.items():
        name, *labels = field.split(stats.SEP)
        by_name.setdefault(name, []).append((labels, value))
    return by_name


def _cumulative(bounds: tuple[float, ...], counts: Mapping[str, float], scale: float) -> list[tuple[str, float]]:
    """Per-bucket counts (keyed by the bound as stats writes it) as Prometheus's cumulative buckets."""
    running = 0.0
    buckets: list[tuple[str, float]] = []
    for bound in bounds:
        running += counts.get(f"{bound:g}", 0.0)
        buckets.append((f"{bound * scale:g}", running))
    running += counts.get("+Inf", 0.0)
    buckets.append(("+Inf", running))
    return buckets


def counter_families(fields: Mapping[str, float]) -> Iterator[Metric]:
    """The counters and histograms of the shared stats hash (:func:`callback_server.stats.totals`)."""
    by_name = _split(fields)
    for name, spec in COUNTERS.items():
        family = CounterMetricFamily(f"{PREFIX}_{spec.metric}", spec.help, labels=spec.labels)
        for labels, value in sorted(by_name.get(name, [])):
            if len(labels) == len(spec.labels):
                family.add_metric(labels, value)
        yield family

    ack = HistogramMetricFamily(
        f"{PREFIX}_ack_latency_seconds",
        "Time from a callback's arrival to its answer (queued, duplicate, quarantined).",
    )
    ack_counts = {labels[0]: value for labels, value in by_name.get("ack_bucket", []) if len(labels) == 1}
    ack_sum = sum(value for _, value in by_name.get("ack_sum_ms", []))
    if ack_counts:
        ack.add_metric([], _cumulative(stats.ACK_BUCKETS_MS, ack_counts, 0.001), ack_sum / 1000)
    yield ack

    handler = HistogramMetricFamily(
        f"{PREFIX}_handler_duration_seconds", "How long each handler ran, per handler.", labels=["handler"]
    )
    per_handler: dict[str, dict[str, float]] = {}
    for labels, value in by_name.get("handler_bucket", []):
        if len(labels) == 2:
            per_handler.setdefault(labels[0], {})[labels[1]] = value
    sums = {labels[0]: value for labels, value in by_name.get("handler_sum_s", []) if len(labels) == 1}
    for name in sorted(per_handler):
        handler.add_metric([name], _cumulative(stats.HANDLER_BUCKETS_S, per_handler[name], 1.0), sums.get(name, 0.0))
    yield handler

    other = CounterMetricFamily(
        f"{PREFIX}_counter", "Counters of the stats hash without a metric of their own.", labels=["name", "labels"]
    )
    for name in sorted(set(by_name) - set(COUNTERS) - HISTOGRAM_PARTS):
        for labels, value in sorted(by_name[name]):
            other.add_metric([name, stats.SEP.join(labels)], value)
    yield other


def _gauge(name: str, help_text: str, value: float, labels: Mapping[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def gauge_families(snap: Status) -> Iterator[Metric]:
    """The gauges of a snapshot: the queue and its registries, workers, Redis memory, reconciliation."""
    on_queue = {"queue": snap.queue}
    yield _gauge("queue_depth", "Deliveries waiting on the queue.", snap.depth, on_queue)
    age = snap.oldest_age or 0.0
    yield _gauge(
        "queue_oldest_age_seconds", "Age of the oldest delivery waiting on the queue (0 when empty).", age, on_queue
    )
    yield _gauge("jobs_running", "Deliveries being handled now (RQ's started registry).", snap.running, on_queue)
    yield _gauge(
        "jobs_scheduled", "Deliveries waiting for a retry (RQ's scheduled registry).", snap.scheduled, on_queue
    )
    yield _gauge(
        "jobs_failed", "Deliveries out of retries (RQ's failed registry; `failed replay`).", snap.failed, on_queue
    )
    yield _gauge("workers_alive", "RQ workers on the queue whose registration key is alive.", snap.workers, on_queue)
    yield _gauge("redis_memory_used_bytes", "Redis used_memory.", snap.memory_used)
    yield _gauge("redis_memory_limit_bytes", "Redis maxmemory (0: no limit).", snap.memory_limit)
    yield _gauge("quarantine_kept", "Quarantined bodies kept for replay.", snap.quarantined)
    yield _gauge("unhandled_kept", "Notes of unhandled deliveries in scb:unhandled.", snap.unhandled_kept)
    yield from _reconcile_families(snap.runs)


def _reconcile_families(runs: Iterable[Mapping[str, Any]]) -> Iterator[Metric]:
    """Each scope's newest run in the reconciler's log: when it finished, whether it was complete, what it found."""
    finished = GaugeMetricFamily(
        f"{PREFIX}_reconcile_last_run_timestamp_seconds",
        "When the newest reconciliation run of a scope finished (Unix time).",
        labels=["scope"],
    )
    complete = GaugeMetricFamily(
        f"{PREFIX}_reconcile_last_run_complete",
        "1 if the newest run of a scope checked its whole window.",
        labels=["scope"],
    )
    found = GaugeMetricFamily(
        f"{PREFIX}_reconcile_last_run_tasks",
        "What the newest run of a scope found: tasks seen, already had, queued (missed "
        "callbacks), quarantined, skipped, task errors.",
        labels=["scope", "outcome"],
    )
    seen_scopes: set[str] = set()
    for run in runs:  # newest first
        scope = str(run.get("scope") or "")
        if scope in seen_scopes:
            continue
        seen_scopes.add(scope)
        when = parse_instant(run.get("finished_at") or run.get("started_at"))
        moment = when.timestamp() if when is not None else 0.0
        finished.add_metric([scope], moment)
        complete.add_metric([scope], 1.0 if run.get("complete") else 0.0)
        for outcome in ("seen", "already_had", "queued", "quarantined", "skipped", "task_errors"):
            value = run.get(outcome)
            if isinstance(value, int | float):
                found.add_metric([scope, outcome], float(value))
    yield finished
    yield complete
    yield found


class SnapshotCollector(Collector):
    """A prometheus-client collector over one :class:`Status` (a registry is built per scrape)."""

    def __init__(self, snapshot: Status) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        """Counters and histograms from the stats hash, then the gauges."""
        yield from counter_families(self.snapshot.counters)
        yield from gauge_families(self.snapshot)


def exposition(snapshot: Status) -> bytes:
    """The Prometheus text format of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


def _authorized(header: str | None, token: bytes) -> bool:
    """``Bearer <token>``, compared in constant time on bytes (a non-ASCII header is simply wrong)."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token)


@bp.get("/metrics")
def metrics() -> Response | tuple[Response, int, dict[str, str]]:
    """The exposition, for a scraper holding METRICS_TOKEN."""
    state = receiver_state(current_app)
    token = state.settings.metrics_token
    if token is None or not _authorized(request.headers.get("Authorization"), token.reveal().encode()):
        return (
            jsonify(error="unauthorized", details="send Authorization: Bearer <METRICS_TOKEN>"),
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    try:
        # This process's own counts still owed to Redis go first, so a scrape sees them too.
        stats.flush(state.connection, state.tally)
        snapshot = read_status(state.connection, state.settings)
    except redis.RedisError as exc:
        raise StoreUnavailableError("could not read the counters from Redis") from exc
    response = Response(exposition(snapshot), mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Mount /metrics only when METRICS_TOKEN is set: without a token the route does not exist (404)."""
    if receiver_state(app).settings.metrics_token is not None:
        app.register_blueprint(bp)

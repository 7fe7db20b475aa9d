"""Reconciliation: ask Scale for completed tasks whose callbacks we never accepted, and queue them.

Scale gives up on a callback after 20 tries in 24 hours; a receiver down for a day, a wrong
key or a lost Redis would lose those results silently. The reconciler lists completed tasks
in a window and puts each one through the *same* path as a callback (same validation, same
delivery identity, same atomic dedup), so running it twice, or while callbacks arrive,
never makes a second job.

Scale's list endpoint filters on ``created_at``, so the window must reach back past the
longest a task takes to complete (RECONCILE_WINDOW, default three days; raise it for
``week`` urgency) and stay within DEDUP_TTL, or old deliveries would look new.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import requests

from callback_server.config import Secret, Settings
from callback_server.deliveries import RECONCILE, Delivery, DeliveryQueue, seen_key
from callback_server.exceptions import CallbackServerError
from callback_server.quarantine import Quarantine
from callback_server.schemas import validate_callback

log = logging.getLogger(__name__)

PAGE_SIZE = 100
"""Tasks per list request: the API's maximum."""

MAX_PAGES = 10_000
"""A run stops (and says so) rather than follow a paging loop forever."""

RATE_LIMIT_RETRIES = 8
"""429 answers tolerated in a row before the run gives up."""

SERVER_ERROR_RETRIES = 3
"""5xx answers (or connection errors) retried in a row before the run gives up."""

MAX_BACKOFF = 60.0
"""The longest single wait between API retries, whatever Retry-After says."""

RUNS_KEY = "scb:reconcile:runs"
"""Redis list of run summaries, newest first."""

RUNS_KEPT = 200
"""How many run summaries are kept."""

LOCK_KEY = "scb:reconcile:lock"
"""Held while a run is going, so two clocks never reconcile at once."""


class ScaleAPIError(CallbackServerError):
    """The Scale API kept failing (5xx, 429 or unreachable) or answered something unreadable."""


class ScaleAPI:
    """Just enough of the Scale v1 API for reconciliation: listing tasks, politely."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = (api_key.reveal(), "")
        self.session = session or requests.Session()
        self.timeout = timeout
        self.backoff = backoff
        self.sleep = sleep

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self.session.close()

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        rate_limited = failures = 0
        while True:
            try:
                response = self.session.get(
                    f"{self.base_url}/{path}", params=params, auth=self._auth, timeout=self.timeout
                )
            except requests.RequestException as exc:
                failures += 1
                if failures > SERVER_ERROR_RETRIES:
                    reason = type(exc).__name__
                    raise ScaleAPIError(f"GET {path}: unreachable after {failures} tries: {reason}") from None
                self.sleep(min(self.backoff * 2 ** (failures - 1), MAX_BACKOFF))
                continue
            if response.status_code == 429:
                rate_limited += 1
                if rate_limited > RATE_LIMIT_RETRIES:
                    raise ScaleAPIError(f"GET {path}: still rate limited after {rate_limited} tries")
                wait = _retry_after(response.headers.get("Retry-After"), self.backoff * 2 ** (rate_limited - 1))
                log.warning("scale api rate limited; waiting", extra={"status": 429, "latency_ms": wait * 1000})
                self.sleep(wait)
                continue
            if response.status_code >= 500:
                failures += 1
                if failures > SERVER_ERROR_RETRIES:
                    raise ScaleAPIError(f"GET {path}: HTTP {response.status_code} after {failures} tries")
                self.sleep(min(self.backoff * 2 ** (failures - 1), MAX_BACKOFF))
                continue
            if response.status_code != 200:
                raise ScaleAPIError(f"GET {path}: HTTP {response.status_code}: {_error_text(response)}")
            try:
                data = response.json()
            except ValueError:
                raise ScaleAPIError(f"GET {path}: answer is not JSON") from None
            if not isinstance(data, dict):
                raise ScaleAPIError(f"GET {path}: answer is not a JSON object")
            return data

    def completed_tasks(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Every completed task created in [start, end], following offset and next_token paging."""
        params: dict[str, Any] = {
            "status": "completed",
            "start_time": start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "end_time": end.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "limit": PAGE_SIZE,
        }
        offset = 0
        seen_tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self._get("tasks", params)
            docs = page.get("docs")
            if not isinstance(docs, list):
                raise ScaleAPIError("GET tasks: answer has no docs list")
            yield from docs
            token = page.get("next_token")
            if token:
                if token in seen_tokens:
                    raise ScaleAPIError("GET tasks: next_token repeats; paging would never end")
                seen_tokens.add(token)
                params.pop("offset", None)
                params["next_token"] = token
            elif page.get("has_more"):
                if not docs:
                    raise ScaleAPIError("GET tasks: has_more with an empty page; paging would never end")
                params.pop("next_token", None)
                offset += len(docs)
                params["offset"] = offset
            else:
                return
        raise ScaleAPIError(f"GET tasks: more than {MAX_PAGES} pages; narrow the window")


def _retry_after(header: str | None, fallback: float) -> float:
    try:
        wait = float(header) if header else fallback
    except ValueError:
        wait = fallback
    return max(0.0, min(wait, MAX_BACKOFF))


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", ""))[:200]
    except (ValueError, AttributeError):
        return response.text[:200]


@dataclass
class RunSummary:
    """What one reconciliation run found and did."""

    run_id: str
    started_at: str
    window_start: str
    window_end: str
    finished_at: str = ""
    seen: int = 0
    already_had: int = 0
    queued: int = 0
    quarantined: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    complete: bool = False
    queued_task_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class RunLog:
    """Run summaries in Redis, newest first, so `reconcile runs` and the dashboard can show them."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection

    def add(self, summary: RunSummary) -> None:
        """Keep a summary (and forget the oldest beyond RUNS_KEPT)."""
        data = summary.as_dict()
        data["queued_task_ids"] = data["queued_task_ids"][:100]
        pipe = self.connection.pipeline(transaction=True)
        pipe.lpush(RUNS_KEY, json.dumps(data))
        pipe.ltrim(RUNS_KEY, 0, RUNS_KEPT - 1)
        pipe.execute()

    def recent(self, limit: int = 20) -> list[RunSummary]:
        """The newest summaries first."""
        return [RunSummary(**json.loads(raw)) for raw in self.connection.lrange(RUNS_KEY, 0, max(limit, 1) - 1)]


class Reconciler:
    """Queues completed tasks whose delivery was never accepted, through the callback path."""

    def __init__(self, api: ScaleAPI, deliveries: DeliveryQueue, quarantine: Quarantine) -> None:
        self.api = api
        self.deliveries = deliveries
        self.quarantine = quarantine
        self.connection = deliveries.connection

    def close(self) -> None:
        """Release the API client's connections."""
        self.api.close()

    def run(self, start: datetime, end: datetime) -> RunSummary:
        """Reconcile one window; the summary says whether it completed, and is kept in the run log."""
        summary = RunSummary(
            run_id=uuid.uuid4().hex[:12],
            started_at=_now_text(),
            window_start=_text(start),
            window_end=_text(end),
        )
        try:
            for task in self.api.completed_tasks(start, end):
                self._one(task, summary)
            summary.complete = True
        except ScaleAPIError as exc:
            summary.errors.append(exc.message)
        except redis.RedisError as exc:
            summary.errors.append(f"redis: {type(exc).__name__}: {exc}")
        summary.finished_at = _now_text()
        fields = {"window": f"{summary.window_start}..{summary.window_end}", "count": summary.queued}
        if summary.complete:
            log.info("reconciliation done", extra={**fields, "outcome": "complete"})
        else:
            log.error("RECONCILIATION INCOMPLETE: %s", "; ".join(summary.errors), extra={**fields, "outcome": "failed"})
        try:
            RunLog(self.connection).add(summary)
        except redis.RedisError as exc:
            summary.errors.append(f"could not keep the run summary: {type(exc).__name__}")
        return summary

    def _one(self, task: Any, summary: RunSummary) -> None:
        summary.seen += 1
        if not isinstance(task, dict) or task.get("status") != "completed":
            summary.skipped += 1
            return
        body = {"task_id": task.get("task_id"), "response": task.get("response"), "task": task}
        mode = "test" if task.get("is_test") else "live"
        errors = validate_callback(body)
        if errors:
            raw = json.dumps(body).encode("utf-8")
            self.quarantine.keep(
                raw,
                reason="reconciled task does not match the callback schema",
                details=errors,
                mode=mode,
                content_type="application/json",
            )
            summary.quarantined += 1
            return
        delivery = Delivery.from_body(body, mode=mode, source=RECONCILE)
        # A cheap read first: most tasks were delivered, and this keeps them out of job building.
        if self.connection.exists(seen_key(delivery.delivery_id)):
            summary.already_had += 1
            return
        if self.deliveries.accept(delivery):
            summary.queued += 1
            summary.queued_task_ids.append(delivery.task_id)
        else:
            summary.already_had += 1


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _now_text() -> str:
    return _text(datetime.now(UTC))


def build_reconciler(settings: Settings, connection: redis.Redis, **api_options: Any) -> Reconciler:
    """A reconciler wired to SCALE_API_URL / SCALE_API_KEY and the callback accept path."""
    if settings.scale_api_key is None:
        raise CallbackServerError("SCALE_API_KEY is not set: the reconciler needs an API key to list tasks")
    api = ScaleAPI(settings.scale_api_url, settings.scale_api_key, **api_options)
    return Reconciler(
        api, DeliveryQueue.from_settings(settings, connection), Quarantine(connection, ttl=settings.quarantine_ttl)
    )


def run_locked(reconciler: Reconciler, start: datetime, end: datetime, lock_ttl: int) -> RunSummary | None:
    """Run unless another run holds the lock (then None): two clocks must not overlap."""
    lock = reconciler.connection.lock(LOCK_KEY, timeout=lock_ttl, blocking=False)
    if not lock.acquire(blocking=False):
        return None
    try:
        return reconciler.run(start, end)
    finally:
        try:
            lock.release()
        except redis.RedisError:
            pass  # it expires on its own

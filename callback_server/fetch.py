"""``fetch``: ask Scale's API for named tasks and put each through the accept path.

The operator's question "Scale says task X is done; where is it?" has two answers: the ledger
(the console's search) when the delivery arrived, and this when it did not. Each task is read
with ``GET task/{id}`` and offered to the accept path exactly as the reconciler offers a listed
task (:meth:`callback_server.accept.AcceptPath.offer_task`): same event, validation, quarantine,
identity and atomic dedup, so fetching a task whose callback did arrive, or fetching it twice,
never makes a second job. Its source is ``fetch``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from callback_server.accept import DUPLICATE, QUARANTINED, QUEUED, SKIPPED, UNKNOWN_EVENT, AcceptPath
from callback_server.config import Settings
from callback_server.exceptions import ConfigError, UnkeepableError
from callback_server.render import printable
from callback_server.scale_api import ScaleAPI, ScaleAPIError

log = logging.getLogger(__name__)

FETCH = "fetch"
"""The ``source`` of a delivery brought by ``fetch`` (the ledger writes it as ``f``)."""

NOT_FOUND = "not found"
INVALID_ID = "invalid id"
API_ERROR = "error"
OUTCOME_LABELS = {
    QUEUED: "queued",
    DUPLICATE: "already had",
    QUARANTINED: "quarantined",
    SKIPPED: "no event yet",
    NOT_FOUND: NOT_FOUND,
    INVALID_ID: INVALID_ID,
    API_ERROR: API_ERROR,
}
"""Each outcome as an operator reads it."""

FAILURES = frozenset({NOT_FOUND, INVALID_ID, API_ERROR})
"""Outcomes that mean the task was not looked at or not found (the command exits non-zero)."""

MAX_TASK_ID = 200
"""The longest task id asked for: Scale's are 24 hex characters; anything far longer is a paste error."""

API_RETRIES = 2
"""Retries of a 429/5xx answer: someone is waiting at a terminal or a console, not a clock."""

API_TIMEOUT = 15.0
"""Seconds per API request."""


@dataclass(frozen=True)
class FetchResult:
    """What became of one task id: ``outcome`` (a key of :data:`OUTCOME_LABELS`) and the ids to look for."""

    task_id: str
    outcome: str
    event: str = ""
    delivery_id: str = ""
    quarantine_id: str = ""
    detail: str = ""

    @property
    def failed(self) -> bool:
        """The task was not found, its id was refused, or the API or Redis failed for it."""
        return self.outcome in FAILURES

    def line(self) -> str:
        """One terminal-safe line: the id, what happened, and where to look next."""
        parts = [self.task_id, OUTCOME_LABELS.get(self.outcome, self.outcome)]
        if self.event and self.event != UNKNOWN_EVENT:
            parts.append(self.event)
        if self.delivery_id:
            parts.append(f"delivery {self.delivery_id}")
        if self.quarantine_id:
            parts.append(f"quarantine {self.quarantine_id}")
        if self.detail:
            parts.append(self.detail)
        return printable("  ".join(parts))


TASK_ID = re.compile(r"[A-Za-z0-9_-]+")
"""What a task id may hold: Scale's are hex. Anything else (``..``, ``/``, ``?``) would reach another path of
the API with the account's key, so it is refused before any request."""


def _id_problem(task_id: str) -> str:
    """Why a task id is not asked for, or '' when it is fine."""
    if not task_id:
        return "the task id is empty"
    if len(task_id) > MAX_TASK_ID:
        return f"the task id is {len(task_id)} characters long (at most {MAX_TASK_ID})"
    if not TASK_ID.fullmatch(task_id):
        return "not a task id: only letters, digits, '_' and '-' (Scale's task ids are hex)"
    return ""


def build_api(settings: Settings, **options: Any) -> ScaleAPI:
    """The Scale API client of SCALE_API_URL / SCALE_API_KEY, patient enough for a person waiting."""
    if settings.scale_api_key is None:
        raise ConfigError("SCALE_API_KEY is not set: fetch asks Scale's API for the tasks (GET task/{id})")
    options = {"retries": API_RETRIES, "timeout": API_TIMEOUT, **options}
    return ScaleAPI(settings.scale_api_url, settings.scale_api_key, **options)


def fetch_tasks(
    settings: Settings, connection: redis.Redis, task_ids: Iterable[str], *, api: ScaleAPI | None = None
) -> list[FetchResult]:
    """Fetch each task from Scale and offer it to the accept path; one result per id, in order.

    Raises :class:`ConfigError` without SCALE_API_KEY, and Redis errors as they come (nothing
    half-done: each task is accepted in one script call or not at all). A refused key stops the
    remaining lookups, which report the same error.
    """
    own_api = api is None
    client = api if api is not None else build_api(settings)
    path = AcceptPath.from_settings(settings, connection)
    results: list[FetchResult] = []
    stopped: str = ""
    try:
        for task_id in task_ids:
            problem = _id_problem(task_id)
            if problem:
                results.append(FetchResult(task_id, INVALID_ID, detail=problem))
            elif stopped:
                results.append(FetchResult(task_id, API_ERROR, detail=stopped))
            else:
                result = _fetch_one(client, path, task_id)
                if result.outcome == API_ERROR and result.detail.startswith(("HTTP 401", "HTTP 403")):
                    stopped = result.detail
                results.append(result)
    finally:
        if own_api:
            client.close()
    return results


def _fetch_one(api: ScaleAPI, path: AcceptPath, task_id: str) -> FetchResult:
    try:
        task = api.get_task(task_id)
    except ScaleAPIError as exc:
        if exc.status == 404:
            return FetchResult(task_id, NOT_FOUND, detail="Scale's API has no such task for this key")
        # The message is the API's, already redacted of the key; the path is dropped as noise.
        detail = exc.message.split(": ", 1)[1] if exc.message.startswith("GET ") else exc.message
        return FetchResult(task_id, API_ERROR, detail=detail)
    try:
        offered = path.offer_task(task, source=FETCH)
    except UnkeepableError as exc:
        return FetchResult(task_id, API_ERROR, detail=exc.message)
    log.info(
        "task fetched",
        extra={
            "task_id": task_id,
            "event": offered.event,
            "outcome": offered.outcome,
            "delivery_id": offered.delivery_id,
        },
    )
    return FetchResult(
        task_id,
        offered.outcome,
        event=offered.event,
        delivery_id=offered.delivery_id,
        quarantine_id=offered.quarantine_id,
    )

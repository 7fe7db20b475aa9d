"""The query of `GET /v1/tasks` and its paging: offset as documented, next_token as later clients use.

Tasks are listed newest first by created_at, ties broken by task_id (both descending), so a
next_token only has to carry the last task's (created_at, task_id) to resume exactly there,
even while new tasks arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scale_sim.exceptions import InvalidRequestError
from scale_sim.tasks import REVIEW_STATUSES, STATUSES, timestamp_ms
from scale_sim.validation import TYPE_ALIASES

DEFAULT_LIMIT = 100
"""Page size when `limit` is not given."""

MAX_LIMIT = 100
"""Largest page the reference allows."""

TOKEN_PREFIX = "sim1."
"""Marks the simulator's next_token format, so a foreign or truncated token is refused with 400."""

_TASK_ID = re.compile(r"^[0-9a-f]{24}$")


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last listed task's created_at (ms) and task_id."""

    created_ms: int
    task_id: str

    def encode(self) -> str:
        """The opaque next_token for this position."""
        raw = json.dumps({"c": self.created_ms, "t": self.task_id}, separators=(",", ":")).encode()
        return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Read a next_token; InvalidRequestError when it is not one the simulator made."""
        bad = InvalidRequestError("Invalid parameter 'next_token': not a token from a previous page")
        if not token.startswith(TOKEN_PREFIX):
            raise bad
        body = token[len(TOKEN_PREFIX) :]
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error):
            raise bad from None
        if not isinstance(data, dict):
            raise bad
        created_ms, task_id = data.get("c"), data.get("t")
        if not isinstance(created_ms, int) or isinstance(created_ms, bool) or created_ms < 0:
            raise bad
        if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
            raise bad
        return cls(created_ms, task_id)


@dataclass(frozen=True)
class ListQuery:
    """A checked `GET /v1/tasks` query."""

    start_ms: int | None = None
    end_ms: int | None = None
    completed_after_ms: int | None = None
    completed_before_ms: int | None = None
    updated_after_ms: int | None = None
    updated_before_ms: int | None = None
    status: str | None = None
    type: str | None = None
    project: str | None = None
    batch: str | None = None
    customer_review_status: tuple[str, ...] = ()
    unique_id: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor: Cursor | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ListQuery:
        """Check the query string; InvalidRequestError names the bad parameter. Unknown ones are ignored.

        `tags` and `customer_review_status` may repeat or be comma-separated; `unique_id` may repeat
        (a unique id may itself hold a comma). A werkzeug MultiDict gives every repeated value.
        """
        status = args.get("status") or None
        if status is not None and status not in STATUSES:
            raise InvalidRequestError(f"Invalid parameter 'status': must be one of {', '.join(STATUSES)}")
        task_type = args.get("type") or None
        token = args.get("next_token") or None
        reviews = _values(args, "customer_review_status", split=True)
        for review in reviews:
            if review not in REVIEW_STATUSES:
                raise InvalidRequestError(
                    f"Invalid parameter 'customer_review_status': {review!r} is not one of {', '.join(REVIEW_STATUSES)}"
                )
        times = {name: _time(args, name) for name in _TIME_PARAMETERS}
        for low, high in (("start_time", "end_time"), ("completed_after", "completed_before"),
                          ("updated_after", "updated_before")):  # fmt: skip
            low_ms, high_ms = times[low], times[high]
            if low_ms is not None and high_ms is not None and low_ms > high_ms:
                raise InvalidRequestError(f"Invalid parameters: {low!r} is later than {high!r}")
        return cls(
            start_ms=times["start_time"],
            end_ms=times["end_time"],
            completed_after_ms=times["completed_after"],
            completed_before_ms=times["completed_before"],
            updated_after_ms=times["updated_after"],
            updated_before_ms=times["updated_before"],
            customer_review_status=reviews,
            unique_id=_values(args, "unique_id", split=False),
            tags=_values(args, "tags", split=True),
            status=status,
            type=TYPE_ALIASES.get(task_type, task_type) if task_type else None,
            project=args.get("project") or None,
            batch=args.get("batch") or None,
            limit=_int(args, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT),
            offset=_int(args, "offset", 0, low=0, high=None),
            cursor=Cursor.decode(token) if token else None,
        )


_TIME_PARAMETERS = (
    "start_time", "end_time", "completed_after", "completed_before", "updated_after", "updated_before",
)  # fmt: skip


def _values(args: Mapping[str, str], name: str, *, split: bool) -> tuple[str, ...]:
    """Every value of a parameter that may repeat (and, with `split`, hold several separated by commas)."""
    getlist = getattr(args, "getlist", None)
    raw: list[str] = getlist(name) if getlist is not None else ([args[name]] if name in args else [])
    values = [part.strip() for item in raw for part in (item.split(",") if split else [item])]
    return tuple(dict.fromkeys(value for value in values if value))


def _time(args: Mapping[str, str], name: str) -> int | None:
    raw = args.get(name)
    if not raw:
        return None
    try:
        return timestamp_ms(raw)
    except ValueError:
        raise InvalidRequestError(f"Invalid parameter {name!r}: must be an ISO 8601 date, got {raw!r}") from None


def _int(args: Mapping[str, str], name: str, default: int, *, low: int, high: int | None) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(f"Invalid parameter {name!r}: must be a whole number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidRequestError(f"Invalid parameter {name!r}: must be {bounds}, got {value}")
    return value


def page_body(docs: list[dict[str, Any]], *, total: int, limit: int, offset: int) -> dict[str, Any]:
    """The answer: docs, total, limit, offset, has_more, and next_token when there is a next page."""
    has_more = offset + len(docs) < total
    body: dict[str, Any] = {
        "docs": docs,
        "total": total,
        "limit": limit,
        "offset": offset,
        "has_more": has_more,
    }
    if has_more and docs:
        last = docs[-1]
        body["next_token"] = Cursor(timestamp_ms(last["created_at"]), last["task_id"]).encode()
    return body

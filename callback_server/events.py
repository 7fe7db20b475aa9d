"""Which Scale event a callback (or a task from the list API) is: one pure function decides.

Scale calls back on completion, on an error at creation, on every audit of a completed task,
and when a task is recalled for rework; the body says which only through the task's state.
The same rules read a callback body's ``task`` and a task the list API returns, so the
reconciler and the web tier always agree on the event, and so on the delivery identity.

=========  ===============================================================  ================
event      the task's state                                                  review_status
=========  ===============================================================  ================
completed  ``status`` completed, no audit since ``completed_at``               None
audit      ``status`` completed, newest audit at or after ``completed_at``    its audit_result
error      ``status`` error (an attachment could not be fetched)              None
recalled   ``status`` pending: sent back for rework; ``response`` may be null None
canceled   ``status`` canceled                                                None
=========  ===============================================================  ================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

COMPLETED = "completed"
AUDIT = "audit"
ERROR = "error"
RECALLED = "recalled"
CANCELED = "canceled"

EVENTS = (COMPLETED, AUDIT, ERROR, RECALLED, CANCELED)
"""Every event a delivery can be; handlers opt into them with ``@handles(..., events=...)``."""

REVIEW_RESULTS = ("accepted", "fixed", "rejected", "commented")
"""An audit's result (``audit_result``), and so a task's ``customer_review_status`` after it."""

FIXED = "fixed"
"""The one audit result that changes ``response``: handlers of results get it by default."""

STATUS_EVENTS = {"completed": COMPLETED, "error": ERROR, "pending": RECALLED, "canceled": CANCELED}
"""Task statuses a callback can carry, and the event each one means (completed may be an audit)."""


class Event(NamedTuple):
    """A delivery's event, and for an audit the newest audit's result."""

    name: str
    review_status: str | None = None

    @property
    def carries_result(self) -> bool:
        """A completion or a fixed audit: what ``@handles(type)`` without ``events`` receives."""
        return self.name == COMPLETED or (self.name == AUDIT and self.review_status == FIXED)


class UnknownStatusError(ValueError):
    """The task's ``status`` is none that Scale calls back with."""


_SLOPPY_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?=T|\s|$)")
_AFTER_DATE = ("T", " ", "")


def _pad_date(match: re.Match[str]) -> str:
    year, month, day = match.groups()
    return f"{year}-{int(month):02d}-{int(day):02d}"


def _is_padded_date(value: str) -> bool:
    """Whether a timestamp already starts YYYY-MM-DD (most do): the padding regex is its cost otherwise.

    ASCII only, since \\d also matches other scripts' digits, which the padding turns into ASCII.
    """
    return len(value) >= 10 and value.isascii() and value[4] == "-" and value[7] == "-" and value[10:11] in _AFTER_DATE


def parse_instant(value: object) -> datetime | None:
    """A timestamp as an aware UTC datetime, or None when absent, malformed or unrepresentable.

    Lenient on purpose: Scale's own docs print ``2016-9-03T07:38:32.368Z``; a timestamp that
    cannot be read is kept as sent in ``raw`` rather than holding back a result.
    """
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    if not _is_padded_date(value):
        value = _SLOPPY_DATE.sub(_pad_date, value, count=1)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 has no UTC instant
        return None


def newest_audit(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The latest audit of a task (by ``audited_at``, list order breaking ties), or None."""
    audits = [a for a in task.get("audits") or () if isinstance(a, Mapping)]
    if not audits:
        return None
    floor = datetime.min.replace(tzinfo=UTC)
    return max(enumerate(audits), key=lambda pair: (parse_instant(pair[1].get("audited_at")) or floor, pair[0]))[1]


def derive_event(task: Mapping[str, Any]) -> Event:
    """The event a task's state means; :class:`UnknownStatusError` for a status Scale never sends."""
    status = task.get("status")
    name = STATUS_EVENTS.get(status) if isinstance(status, str) else None
    if name is None:
        raise UnknownStatusError(f"status {status!r} is none of {', '.join(STATUS_EVENTS)}")
    if name != COMPLETED:
        return Event(name)
    audit = newest_audit(task)
    if audit is None:
        return Event(COMPLETED)
    audited_at = parse_instant(audit.get("audited_at"))
    completed_at = parse_instant(task.get("completed_at"))
    # A completion after a recall keeps the older audits: only an audit since the completion counts.
    if audited_at is not None and completed_at is not None and audited_at < completed_at:
        return Event(COMPLETED)
    result = audit.get("audit_result")
    if not isinstance(result, str) or not result:
        review = task.get("customer_review_status")
        result = review if isinstance(review, str) and review else None
    return Event(AUDIT, result)

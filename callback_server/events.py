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

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from callback_server.times import parse_instant

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

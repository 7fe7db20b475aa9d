"""The one accept path: every body that may become a job comes through :meth:`AcceptPath.offer`.

Scale's POST, the reconciler, ``fetch`` and the quarantine's replays (console and CLI) all
call it, and only map its :class:`Offered` to their own output. It parses and validates the
body, derives its event once, builds the delivery and accepts it atomically
(:class:`~callback_server.deliveries.DeliveryQueue`), and keeps (quarantines) the body,
with the reason, on invalid input or on any unexpected error. Only Redis errors (and
:class:`~callback_server.exceptions.UnkeepableError`, when even keeping failed) are raised:
nothing was stored, so the caller answers 503, or stops, and the sender tries again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

import redis

from callback_server import stats
from callback_server.auth import LIVE, TEST
from callback_server.config import Settings
from callback_server.deliveries import CALLBACK, REPLAY, Delivery, DeliveryQueue
from callback_server.events import UnknownStatusError, derive_event
from callback_server.exceptions import InvalidCallbackError, NotFoundError, UnkeepableError
from callback_server.quarantine import Quarantine
from callback_server.render import shorten
from callback_server.schemas import load_callback_event

log = logging.getLogger(__name__)

QUEUED = "queued"
DUPLICATE = "duplicate"
QUARANTINED = "quarantined"
SKIPPED = "skipped"
NOT_FOUND = "not found"
"""What an offer did: a new job; a delivery already accepted; the body kept for replay; a listed task
with no event yet; a replayed quarantine entry that is gone."""

UNKNOWN_EVENT = "unknown"
"""The event of a body that names none Scale calls back with (it is quarantined)."""

JSON = "application/json"


@dataclass(frozen=True)
class Offered:
    """What became of one body on the accept path, and the ids to look for it under."""

    outcome: str
    event: str = UNKNOWN_EVENT
    task_id: str = ""
    task_type: str = ""
    delivery_id: str = ""
    quarantine_id: str = ""
    reason: str = ""
    """Why the body was quarantined (the validation's message, or the unexpected error's type)."""
    details: Any = None
    """The validation's details, for a body that did not match the schema."""
    unexpected: bool = False
    """The body passed validation but something else failed (a bug, not the sender's fault)."""

    @property
    def accepted(self) -> bool:
        """Redis holds a job for the delivery: this offer's or an earlier one's."""
        return self.outcome in (QUEUED, DUPLICATE)

    @property
    def replay_outcome(self) -> str:
        """The outcome as a replay reports it: a refused body is ``still invalid``, or ``kept`` after an error."""
        if self.outcome != QUARANTINED:
            return self.outcome
        return "kept" if self.unexpected else "still invalid"


class AcceptPath:
    """The accept path of one Redis: a :class:`DeliveryQueue` and the :class:`Quarantine` beside it."""

    def __init__(self, deliveries: DeliveryQueue, quarantine: Quarantine) -> None:
        self.deliveries = deliveries
        self.quarantine = quarantine

    @classmethod
    def from_settings(cls, settings: Settings, connection: redis.Redis) -> AcceptPath:
        """The accept path as configured: the web tier, replays, the reconciler and ``fetch`` all use this."""
        return cls(
            DeliveryQueue.from_settings(settings, connection),
            Quarantine(connection, ttl=settings.quarantine_ttl),
        )

    def offer(
        self,
        raw: bytes,
        *,
        mode: str,
        source: str,
        content_type: str = JSON,
        request_id: str | None = None,
        tally: stats.Tally | None = None,
        kept: str | None = None,
        check_seen: bool = False,
    ) -> Offered:
        """Put one body through the accept path; raises only Redis errors (then nothing changed).

        ``kept`` names the quarantine entry the body comes from (a replay): accepted, the entry
        goes; refused again, it stays with the new reason instead of being kept twice.
        ``check_seen`` reads the dedup first, for callers (the reconciler) whose bodies were
        mostly delivered already: that keeps them out of job building.
        """
        event = UNKNOWN_EVENT
        try:
            body, text, found = load_callback_event(raw)
            event = found.name
            delivery = Delivery.from_body(body, mode=mode, source=source, raw=text, request_id=request_id, event=found)
            if check_seen and self.deliveries.is_seen(delivery.delivery_id):
                queued = False
            else:
                queued = self.deliveries.accept(delivery, tally)
        except redis.RedisError:
            raise
        except InvalidCallbackError as exc:
            refused = Offered(QUARANTINED, reason=exc.message, details=exc.details)
        except Exception as exc:  # the body is kept rather than lost to a 500 or a traceback
            log.error(
                "valid body could not be queued; quarantined",
                exc_info=True,
                extra={"outcome": QUARANTINED, "source": source, "error": type(exc).__name__},
            )
            reason = f"body passed validation but could not be queued: {type(exc).__name__}"
            details = {"_schema": [shorten(exc, 300)]}
            refused = Offered(QUARANTINED, event, reason=reason, details=details, unexpected=True)
        else:
            if kept is not None:
                self._forget(kept)
            return Offered(
                QUEUED if queued else DUPLICATE,
                event,
                task_id=delivery.task_id,
                task_type=delivery.task_type,
                delivery_id=delivery.delivery_id,
            )
        try:
            return self._keep(raw, refused, mode=mode, source=source, content_type=content_type, kept=kept)
        except redis.RedisError:
            raise
        except Exception as exc:
            raise UnkeepableError(refused.reason, type(exc).__name__) from exc

    def replay(self, quarantine_id: str) -> Offered:
        """A kept body offered again with the key mode it came with (``not found`` once it is gone).

        Accepted, it leaves the quarantine; refused again, it stays, with the new reason.
        """
        try:
            item = self.quarantine.get(quarantine_id)
        except NotFoundError as exc:
            return Offered(NOT_FOUND, quarantine_id=quarantine_id, reason=exc.message)
        return self.offer(item.body, mode=item.mode, source=REPLAY, content_type=item.content_type, kept=quarantine_id)

    def offer_task(self, task: Any, *, source: str) -> Offered:
        """A task as Scale's API answers it, offered as the callback Scale sends for its current state.

        Its mode is the task's own (``is_test``): the API brings no key. A task still waiting
        for its first completion is ``skipped``: no event has happened, no callback is owed.
        """
        if isinstance(task, dict) and task.get("status") == "pending" and not task.get("completed_at"):
            return Offered(SKIPPED, task_id=str(task.get("task_id")))
        body = callback_body(task) if isinstance(task, dict) else task
        raw = json.dumps(body).encode()  # ASCII: a lone surrogate in a task stays an escape, as JSON allows
        return self.offer(raw, mode=task_mode(task), source=source, check_seen=True)

    def _keep(
        self, raw: bytes, refused: Offered, *, mode: str, source: str, content_type: str, kept: str | None
    ) -> Offered:
        """Quarantine a refused body (or, for a replay, note the new reason on the entry it came from)."""
        event = refused.event if refused.event != UNKNOWN_EVENT else _event_name(raw)
        if kept is None:
            reason = refused.reason if source == CALLBACK else f"{source}: {refused.reason}"
            kept = self.quarantine.keep(
                raw, reason=reason, details=refused.details, mode=mode, content_type=content_type
            )
        else:
            self.quarantine.note_reason(kept, refused.reason)
        return replace(refused, event=event, quarantine_id=kept)

    def _forget(self, quarantine_id: str) -> None:
        try:
            self.quarantine.delete(quarantine_id)
        except NotFoundError:
            pass  # another replay (the console's, the CLI's) took it first: it is accepted all the same


def callback_body(task: Any) -> dict[str, Any]:
    """The callback Scale sends for a task in this state, built from the task as the API lists it."""
    return {
        "task_id": task.get("task_id"),
        "status": task.get("status"),
        "response": task.get("response"),
        "task": task,
    }


def task_mode(task: Any) -> str:
    """The key mode of a task that came without a key (from the API): its own ``is_test``."""
    return TEST if isinstance(task, dict) and task.get("is_test") is True else LIVE


def event_name(task: Any) -> str:
    """The event a task's state means, or ``unknown`` (for counting a refused one; never raises)."""
    try:
        return derive_event(task).name
    except (UnknownStatusError, TypeError, ValueError, AttributeError, RecursionError):
        return UNKNOWN_EVENT


def _event_name(raw: bytes) -> str:
    """The event a refused body names, when it names one."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return UNKNOWN_EVENT
    return event_name(body.get("task")) if isinstance(body, dict) else UNKNOWN_EVENT

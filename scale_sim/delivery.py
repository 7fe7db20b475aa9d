"""Callback delivery: the body and header Scale sends, one POST, and the retry schedule.

Only exactly HTTP 200 counts as delivered (the reference's rule; later docs accept any 2xx,
so a receiver that answers 200 is right under both). Anything else, a connection error or a
timeout included, is retried: 20 tries over 24 hours, compressed by SCALE_SIM_TIME_SCALE.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import requests

from scale_sim import defaults
from scale_sim.faults import Faults
from scale_sim.store import DeliveryPlan
from scale_sim.tasks import callback_body

__all__ = ["AttemptResult", "callback_body", "plan_deliveries", "retry_delay", "send_callback", "wrong_key_for"]

AUTH_HEADER = "scale-callback-auth"
"""The header that carries the account's callback auth key."""

_OS_ERROR = re.compile(r"\[Errno -?\d+\] [^\"')]+")

USER_AGENT = "scale-sim/1 (Scale API callback simulator)"
"""Identifies the simulator's callbacks in a receiver's logs."""


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came to: a status code, or the error that kept it from getting one."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        """True on exactly 200, the only answer Scale counts as delivered."""
        return self.status_code == 200


def wrong_key_for(key: str) -> str:
    """A header value that is certainly not the key (for the `wrong_key` fault), derived so it is stable."""
    return "wrong-" + hashlib.sha256(f"wrong:{key}".encode()).hexdigest()[:24]


def send_callback(url: str, body: bytes, auth_value: str | None, *, timeout: float) -> AttemptResult:
    """POST one callback; never raises for network trouble, which is recorded as the try's error."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if auth_value is not None:
        headers[AUTH_HEADER] = auth_value
    started = time.monotonic()
    try:
        # A fresh connection per try, closed at once, as a retry from Scale would be.
        with requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as answer:
            status: int | None = answer.status_code
            error = None
    except requests.RequestException as exc:
        status, error = None, f"{type(exc).__name__}: {_describe(exc)}"
    return AttemptResult(status, error, int((time.monotonic() - started) * 1000))


def _describe(exc: Exception) -> str:
    """The gist of a network error: the OS error when there is one (`[Errno 111] Connection refused`)."""
    text = str(exc)
    match = _OS_ERROR.search(text)
    if match:
        return match.group(0)
    return text if len(text) <= 200 else text[:197] + "..."


def retry_delay(
    attempts_made: int, time_scale: float, schedule: Sequence[float] = defaults.RETRY_DELAYS
) -> float | None:
    """Seconds until the next try after `attempts_made` failed ones; None once all tries are spent."""
    if attempts_made >= defaults.MAX_ATTEMPTS or attempts_made < 1:
        return None
    return schedule[min(attempts_made, len(schedule)) - 1] * time_scale


def plan_deliveries(url: str, faults: Faults, *, now: float) -> list[DeliveryPlan]:
    """The deliveries a completed task gets under its faults: none sent (drop), held (reorder), copies."""
    if faults.drop:
        return [DeliveryPlan(copy=1, state="dropped", url=url, wrong_key=faults.wrong_key)]
    state = "held" if faults.reorder else "pending"
    return [
        DeliveryPlan(
            copy=copy,
            state=state,
            url=url,
            wrong_key=faults.wrong_key,
            next_attempt_at=now + faults.delay,
            held_since=now if faults.reorder else None,
        )
        for copy in range(1, faults.duplicate + 1)
    ]

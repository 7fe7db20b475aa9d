"""The end-to-end probe of ``doctor --url``: a delivery of its own kind, seen by no user handler.

doctor POSTs a callback of the reserved task type ``scb_probe``, signed with the test key, to
the public URL. It takes the whole real path (router, gunicorn, key check, validation, the
accept script, the queue, a worker), and the worker's dispatch hands it to :func:`handle_probe`
instead of the handlers. That function tells doctor it got there (a short-lived Redis list
doctor waits on) and removes what accepting it wrote: its identity, its ledger entry and its
counter. What remains is the log lines of the receiver and the worker.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import redis

from callback_server import defaults, ledger, scripts, stats
from callback_server.deliveries import SEEN_PERIOD, seen_period_key
from callback_server.times import parse_instant, stamp

log = logging.getLogger(__name__)

PROBE_TYPE = defaults.PROBE_TYPE
"""The task type reserved for the probe: Scale has no such type, and workers never hand it to a handler."""

PROBE_PREFIX = "scb:probe"
"""Key prefix of the list a worker pushes to once it processed a probe (doctor waits on it)."""

PROBE_TTL = 600
"""Seconds a processed probe's notice is kept if doctor is no longer waiting for it."""

_NONCE = re.compile(r"[0-9a-f]{32}")


def new_nonce() -> str:
    """A fresh probe's id: 32 hex characters."""
    return uuid.uuid4().hex


def notice_key(nonce: str) -> str:
    """The list a worker pushes to once it processed the probe ``nonce``."""
    return f"{PROBE_PREFIX}:{nonce}"


def probe_body(nonce: str, now: datetime | None = None) -> dict[str, Any]:
    """The probe callback: a completed task of type ``scb_probe``, valid as any unknown type is."""
    moment = stamp(now)
    task_id = f"{PROBE_TYPE}_{nonce}"
    task = {
        "task_id": task_id,
        "type": PROBE_TYPE,
        "status": "completed",
        "created_at": moment,
        "completed_at": moment,
        "is_test": True,
        "params": {},
        "metadata": {"probe": nonce},
    }
    return {"task_id": task_id, "status": "completed", "response": {"probe": nonce}, "task": task}


def handle_probe(connection: redis.Redis, delivery: dict[str, Any]) -> dict[str, list[str]]:
    """The worker's side of a probe: say it arrived, and remove what accepting it left behind.

    Anyone holding a callback key can send a ``scb_probe`` delivery; all it can do is this: the
    identity, ledger entry and counter removed are the probe's own (the identity was computed by
    the receiver, not sent), and the notice is a short-lived list under a 32-hex name.
    """
    delivery_id = str(delivery.get("delivery_id", ""))
    body = delivery.get("body")
    response = body.get("response") if isinstance(body, dict) else None
    nonce = str(response.get("probe", "")) if isinstance(response, dict) else ""
    received = _received_at(delivery.get("received_at"))
    period = int(received // SEEN_PERIOD)
    periods = [seen_period_key(b) for b in (period - 1, period, period + 1)]
    stream = int(received // ledger.PERIOD)
    counter = stats.field(
        "delivery", "queued", PROBE_TYPE, delivery.get("event", "completed"), delivery.get("mode", "")
    )
    notice = notice_key(nonce) if _NONCE.fullmatch(nonce) else ""
    keys, args = scripts.probe_cleanup_call(
        seen=periods,
        streams=(ledger.stream_key(stream), ledger.stream_key(stream + 1)),
        counters=stats.TOTAL_KEY,
        notice=notice,
        job=f"rq:job:{delivery_id}",
        indexes=(ledger.index_key(stream), ledger.index_key(stream + 1)),
        identity=ledger.raw_id(delivery_id),
        counter_field=counter,
        notice_ttl=PROBE_TTL,
        task_id=str(delivery.get("task_id", "")),
    )
    connection.register_script(scripts.PROBE_CLEANUP)(keys=keys, args=args)
    log.info(
        "probe processed",
        extra={
            "task_id": delivery.get("task_id"),
            "delivery_id": delivery_id,
            "mode": delivery.get("mode"),
            "outcome": "probe",
        },
    )
    return {"ran": [], "skipped": []}


def _received_at(value: Any) -> float:
    """When the receiver accepted it (the envelope's ``received_at``), as a Unix time; now if unreadable."""
    moment = parse_instant(value)
    return (moment or datetime.now(UTC)).timestamp()

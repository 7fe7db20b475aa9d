"""The endpoint Scale POSTs to: authenticate, parse, validate, deduplicate, enqueue, answer.

It answers 200 only once Redis holds the job (``queued``), or already held it
(``duplicate``), or holds the unreadable body for replay (``quarantined``); anything it
could not store becomes a 503, so Scale tries again. It imports no handler code.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from callback_server import stats
from callback_server.accept import QUARANTINED
from callback_server.auth import HEADER
from callback_server.deliveries import CALLBACK
from callback_server.exceptions import (
    MalformedRequestError,
    PayloadTooLargeError,
    StoreUnavailableError,
    UnkeepableError,
    UnsupportedMediaTypeError,
)
from callback_server.web.state import ReceiverState, receiver_state

log = logging.getLogger(__name__)

bp = Blueprint("ingest", __name__)

REQUEST_ID_HEADER = "X-Request-ID"
"""The header Heroku's router sets on every request: 20-200 characters of letters, digits, + / = -."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9+/=_.-]{1,200}")

UNREAD_BODY = "callback_server.unread_body"
"""WSGI environ key set when a request's body could not be read to its end (broken framing)."""


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


_BODIES = {
    status: json.dumps({"status": status}, separators=(",", ":")).encode()
    for status in ("queued", "duplicate", "quarantined")
}


def _answer(status: str, started: float, tally: stats.Tally, **fields: Any) -> Response:
    latency_ms = (time.perf_counter() - started) * 1000
    # The latency is known only now: it rides along with this process's next Redis write.
    tally.add(*stats.ack_latency(latency_ms))
    log.info("callback %s", status, extra={"outcome": status, "latency_ms": round(latency_ms, 2), **fields})
    # Three fixed answers: prebuilt bytes instead of jsonify on every callback.
    return Response(_BODIES[status], mimetype="application/json")


def _unavailable(state: ReceiverState, mode: str, message: str) -> StoreUnavailableError:
    state.tally.add(*stats.outcome_counts("unavailable", mode))
    return StoreUnavailableError(message)


@bp.post("/callback")
def receive() -> Response:
    """Accept one callback from Scale."""
    started = time.perf_counter()
    state = receiver_state(current_app)
    mode = state.keyring.authenticate(request.headers.get(HEADER))
    request_id = _request_id()
    state.tally.flush_in_background(state.connection)
    if not _is_json(request.mimetype):
        raise UnsupportedMediaTypeError(
            f"callbacks must be application/json, got {request.mimetype or 'no content type'}"
        )
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raw = None
    except (ParseException, NoMoreData, ClientDisconnected) as exc:
        # gunicorn decodes chunked framing as we read. Its exceptions carry the offending bytes
        # (up to 8 KB of body), so only the class name goes on: no body text reaches a log.
        # werkzeug reports a body that ends before its announced size as ClientDisconnected.
        # The rest of the body is unread: gunicorn.conf.py drains it after the answer, so the
        # close is not a reset that could cut off the 400.
        request.environ[UNREAD_BODY] = True
        raise MalformedRequestError(
            f"the request body's framing is malformed or cut short ({type(exc).__name__})"
        ) from None
    # A chunked body (no Content-Length) is cut at the limit without an error by werkzeug:
    # reaching the limit exactly is taken as going over it, never as a complete body.
    if raw is None or (request.content_length is None and len(raw) >= limit):
        raise PayloadTooLargeError(f"body is over the limit of {limit} bytes")
    try:
        offered = state.accept.offer(
            raw, mode=mode, source=CALLBACK, content_type=request.mimetype, request_id=request_id, tally=state.tally
        )
    except (redis.RedisError, UnkeepableError) as store_error:
        raise _unavailable(state, mode, "could not store the delivery; try again") from store_error
    if offered.outcome == QUARANTINED:
        state.tally.add(*stats.outcome_counts(QUARANTINED, mode))
        return _answer(
            QUARANTINED,
            started,
            state.tally,
            mode=mode,
            reason=offered.reason,
            quarantine_id=offered.quarantine_id,
            request_id=request_id,
        )
    return _answer(
        offered.outcome,
        started,
        state.tally,
        task_id=offered.task_id,
        type=offered.task_type,
        event=offered.event,
        delivery_id=offered.delivery_id,
        mode=mode,
        request_id=request_id,
    )


def _request_id() -> str:
    """Heroku's router's X-Request-ID (it makes one when the client sent none or a bad one), else a new one.

    It goes into the ack line and the job, so one id follows a delivery from the router to the
    handler's log line. A value outside the router's alphabet (a local client's) is replaced.
    A made one is 32 hex digits from the process's PRNG (reseeded in each forked worker): it
    only has to be unique, and uuid4 asks the kernel for randomness on every callback.
    """
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.fullmatch(given) else f"{random.getrandbits(128):032x}"

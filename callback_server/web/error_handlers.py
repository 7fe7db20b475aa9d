"""The one place where errors become HTTP answers: JSON ``{"error": ..., "details": ...}``."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from callback_server.exceptions import HTTPError, StoreUnavailableError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30
"""What a 503 asks the sender to wait; Scale keeps its own schedule, other clients may honour it."""


def _callback_error(exc: HTTPError) -> tuple[Response, int]:
    response = jsonify(error=exc.error, details=exc.details if exc.details is not None else exc.message)
    if isinstance(exc, StoreUnavailableError):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        log.error(
            "redis unavailable: %s",
            exc.message,
            extra={"outcome": "unavailable", "status": 503, "error": type(exc.__cause__).__name__},
        )
    else:
        log.warning("callback refused: %s", exc.message, extra={"outcome": exc.error, "status": exc.status_code})
    return response, exc.status_code


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    code = exc.code or 500
    return jsonify(error=(exc.name or "error").lower().replace(" ", "_"), details=exc.description), code


def init_app(app: Flask) -> None:
    """Register the JSON error handlers."""
    app.register_error_handler(HTTPError, _callback_error)
    app.register_error_handler(HTTPException, _http_error)

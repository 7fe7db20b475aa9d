"""Liveness and readiness probes; they reveal nothing but up or down."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, current_app, jsonify

from callback_server.web.state import receiver_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving."""
    return jsonify(status="ok")


READY_KEY = "scb:ready"
"""A tiny key /readyz writes: a Redis that answers but refuses writes (full, read-only) is not ready."""


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Redis answers and takes a write, so a callback would be stored."""
    try:
        receiver_state(current_app).connection.set(READY_KEY, "1", ex=60)
    except (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError) as exc:
        return jsonify(status="unavailable", details=f"redis refuses writes ({type(exc).__name__})"), 503
    except redis.RedisError:
        return jsonify(status="unavailable", details="redis does not answer"), 503
    return jsonify(status="ready"), 200

"""Liveness and readiness probes; they reveal nothing but up or down."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, current_app, jsonify

from callback_server.state import receiver_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Redis answers, so a callback would be stored."""
    try:
        receiver_state(current_app).connection.ping()
    except redis.RedisError:
        return jsonify(status="unavailable", details="redis does not answer"), 503
    return jsonify(status="ready"), 200

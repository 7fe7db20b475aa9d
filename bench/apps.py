"""The two comparison apps of the ingest benchmark, served by the same gunicorn config as ours.

- ``bare``: a Flask route that returns 200: the ceiling.
- ``naive``: what most samples do: parse, validate with a marshmallow schema, ``Queue.enqueue``.
"""

from __future__ import annotations

import hmac
import os

import redis
from flask import Flask, jsonify, request
from rq import Queue

from callback_server.schemas import validate_callback


def bare() -> Flask:
    """POST /callback answers 200 and does nothing else."""
    app = Flask(__name__)

    @app.post("/callback")
    def callback():  # noqa: ANN202
        return jsonify(status="ok")

    return app


def naive() -> Flask:
    """POST /callback checks the key, validates, and enqueues with RQ's defaults (pickle, 2 round trips)."""
    app = Flask(__name__)
    key = os.environ["SCALE_CALLBACK_AUTH_KEY"].encode()
    queue = Queue("naive", connection=redis.Redis.from_url(os.environ["REDIS_URL"]))

    @app.post("/callback")
    def callback():  # noqa: ANN202
        if not hmac.compare_digest(request.headers.get("scale-callback-auth", "").encode(), key):
            return jsonify(error="unauthorized"), 401
        body = request.get_json()
        if validate_callback(body):
            return jsonify(error="invalid"), 400
        queue.enqueue("workers.dispatch.process_delivery", body, description=body["task_id"])
        return jsonify(status="queued")

    return app

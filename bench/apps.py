"""The two comparison apps of the ingest benchmark, served by the same gunicorn config as ours.

- ``bare``: a Flask route that returns 200: the ceiling.
- ``naive``: what most samples do: parse, validate with a marshmallow schema, ``Queue.enqueue``.
- ``floor``: the least any durable ack can do: check the key, parse, one Redis script call.
  No validation, no job format, no log line: how far below ``bare`` the round trip alone is.
"""

from __future__ import annotations

import hmac
import json
import os

import redis
from flask import Flask, jsonify, request
from rq import Queue

from callback_server.schemas import validate_callback


def bare() -> Flask:
    """POST /callback answers 200 and does nothing else."""
    app = Flask(__name__)

    @app.post("/callback")
    def callback():
        return jsonify(status="ok")

    return app


def naive() -> Flask:
    """POST /callback checks the key, validates, and enqueues with RQ's defaults (pickle, 2 round trips)."""
    app = Flask(__name__)
    key = os.environ["SCALE_CALLBACK_AUTH_KEY"].encode()
    queue = Queue("naive", connection=redis.Redis.from_url(os.environ["REDIS_URL"]))

    @app.post("/callback")
    def callback():
        if not hmac.compare_digest(request.headers.get("scale-callback-auth", "").encode(), key):
            return jsonify(error="unauthorized"), 401
        body = request.get_json()
        if validate_callback(body):
            return jsonify(error="invalid"), 400
        queue.enqueue("workers.dispatch.process_delivery", body, description=body["task_id"])
        return jsonify(status="queued")

    return app


_FLOOR_SCRIPT = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', 600) then return 0 end
redis.call('HSET', KEYS[2], 'data', ARGV[1])
redis.call('RPUSH', KEYS[3], KEYS[2])
return 1
"""


def floor() -> Flask:
    """POST /callback checks the key, parses the JSON and stores it with one EVALSHA."""
    app = Flask(__name__)
    key = os.environ["SCALE_CALLBACK_AUTH_KEY"].encode()
    conn = redis.Redis.from_url(os.environ["REDIS_URL"])
    store = conn.register_script(_FLOOR_SCRIPT)

    @app.post("/callback")
    def callback():
        if not hmac.compare_digest(request.headers.get("scale-callback-auth", "").encode(), key):
            return jsonify(error="unauthorized"), 401
        raw = request.get_data()
        task_id = json.loads(raw)["task_id"]
        store(keys=[f"floor:seen:{task_id}", f"floor:job:{task_id}", "rq:queue:floor"], args=[raw])
        return jsonify(status="queued")

    return app

"""Sentry: real events, caught by a local transport, carry the delivery's tags and none of its body, key or headers."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
import sentry_sdk
from flask import request
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from callback_server import sentry
from callback_server.config import Secret, Settings
from callback_server.deliveries import Delivery, DeliveryQueue
from callback_server.exceptions import ConfigError
from callback_server.web import create_app
from tests.support.fixtures import load_fixture
from tests.support.keys import LIVE_KEY
from tests.support.settings import make_settings

DSN = "https://0123456789abcdef0123456789abcdef@sentry.invalid/42"
"""A well-formed DSN; the local transport means nothing is ever sent to it."""

SECRET_MARK = "BODY-SECRET-7f3a"
"""Put in every body, cookie, query string and header value: no captured byte may hold it."""


class LocalTransport(Transport):
    """Keeps every envelope in memory instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes if (event := envelope.get_event()) is not None]

    def raw(self) -> bytes:
        return b"".join(envelope.serialize() for envelope in self.envelopes)


@pytest.fixture
def transport(settings: Settings) -> Iterator[LocalTransport]:
    """Sentry started as the app starts it, sending to a local transport; stopped after the test."""
    local = LocalTransport()
    yield local
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # a client without a DSN: nothing is captured by the next tests


def test_without_a_dsn_nothing_starts(settings: Settings) -> None:
    assert settings.sentry_dsn is None
    assert sentry.init_sentry(settings, "web") is False
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.parametrize("dsn", ["sentry.io/1", "ftp://key@host/1", "https://host/1", "https://key@host/project"])
def test_a_malformed_dsn_stops_the_boot_without_echoing_it(redis_conn: redis.Redis, dsn: str) -> None:
    env = {"REDIS_URL": "redis://localhost", "SCALE_CALLBACK_AUTH_KEY": LIVE_KEY, "SENTRY_DSN": dsn}
    with pytest.raises(ConfigError, match="SENTRY_DSN must be a Sentry DSN") as caught:
        Settings.from_env(env)
    assert dsn not in str(caught.value)


def test_a_web_error_is_reported_with_no_header_cookie_query_or_body(
    settings: Settings, transport: LocalTransport
) -> None:
    app = create_app(replace(settings, sentry_dsn=Secret(DSN)))
    assert sentry.init_sentry(replace(settings, sentry_dsn=Secret(DSN)), "web", transport=transport)

    @app.post("/boom")
    def boom() -> str:
        request.get_data()
        raise RuntimeError("something broke")

    client = app.test_client()
    client.set_cookie("session", SECRET_MARK)
    answer = client.post(
        f"/boom?secret={SECRET_MARK}",
        data=json.dumps({"task_id": "t1", "note": SECRET_MARK}),
        content_type="application/json",
        headers={
            "scale-callback-auth": f"{LIVE_KEY}",
            "Authorization": f"Bearer {SECRET_MARK}",
            "X-Custom": SECRET_MARK,
        },
    )
    assert answer.status_code == 500
    app.extensions["callback_server"].tally.stop()
    events = transport.events()
    assert len(events) == 1
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["request"] == {"method": "POST", "url": "http://localhost/boom"}
    assert event["tags"]["component"] == "web"
    raw = transport.raw()
    assert raw  # something was captured and serialized
    assert SECRET_MARK.encode() not in raw
    assert LIVE_KEY.encode() not in raw
    assert b"scale-callback-auth" not in raw.lower()
    for frame in event["exception"]["values"][-1]["stacktrace"]["frames"]:
        assert "vars" not in frame


def test_an_error_log_line_becomes_an_event_tagged_with_its_delivery(
    settings: Settings, transport: LocalTransport
) -> None:
    sentry.init_sentry(replace(settings, sentry_dsn=Secret(DSN)), "web", transport=transport)
    logging.getLogger("callback_server.test").error(
        "valid body could not be queued",
        extra={
            "task_id": "t\n1",
            "type": "categorization",
            "event": "completed",
            "delivery_id": "d1",
            "body": SECRET_MARK,
        },
    )
    [event] = transport.events()
    assert event["tags"]["task_id"] == "t\\x0a1"  # escaped: a tag value is one printable line
    assert event["tags"]["type"] == "categorization"
    assert event["tags"]["event"] == "completed"
    assert event["tags"]["delivery_id"] == "d1"
    assert "body" not in event.get("extra", {})
    assert SECRET_MARK.encode() not in transport.raw()


@pytest.fixture
def failing_handler() -> Iterator[None]:
    """The tests' recording handlers registered for this test (one is told to fail through Redis)."""
    from workers.registry import registry

    importlib.import_module("workers.handlers")
    saved = registry.snapshot()
    name = "tests.workers.recording_handlers"
    loaded = sys.modules.get(name)
    importlib.reload(loaded) if loaded is not None else importlib.import_module(name)
    yield
    registry.restore(saved)


def test_a_failing_handler_is_reported_with_the_delivery_s_tags_and_never_its_body(
    redis_server: Any, redis_conn: redis.Redis, transport: LocalTransport, failing_handler: None
) -> None:
    settings = make_settings(redis_server.url, handler_retry_intervals=(), sentry_dsn=Secret(DSN))
    assert sentry.init_sentry(settings, "worker", transport=transport)
    body = load_fixture("categorization")
    body["task"]["metadata"] = {"note": SECRET_MARK}
    delivery = replace(Delivery.from_body(body, mode="live"), request_id="req-abc")
    assert DeliveryQueue.from_settings(settings, redis_conn).accept(delivery)
    redis_conn.set("test:fail:record", 1)
    queue = DeliveryQueue.from_settings(settings, redis_conn).queue
    SimpleWorker([queue], connection=redis_conn, serializer=JSONSerializer).work(burst=True)
    events = transport.events()
    # The handler's failure (its log line), and the job failing for good (RQ's integration: no retry left).
    assert len(events) == 2, [e.get("logentry") or e.get("exception") for e in events]
    handler_event = next(e for e in events if e.get("logger") == "workers.dispatch")
    tags = handler_event["tags"]
    assert tags["task_id"] == delivery.task_id
    assert tags["type"] == "categorization"
    assert tags["event"] == "completed"
    assert tags["delivery_id"] == delivery.delivery_id
    assert tags["request_id"] == "req-abc"
    assert tags["handler"] == "tests.workers.recording_handlers.record"
    assert tags["component"] == "worker"
    # RQ reports the job failing for good after it ran, outside its context: the delivery id is its job id.
    job_event = next(e for e in events if e.get("logger") != "workers.dispatch")
    assert job_event["tags"]["delivery_id"] == delivery.delivery_id
    assert job_event["tags"]["component"] == "worker"
    assert set(job_event["extra"]["rq-job"]) <= set(sentry.KEPT_JOB_KEYS)
    raw = transport.raw()
    assert SECRET_MARK.encode() not in raw
    assert b"Red or blue" not in raw and b'"response"' not in raw


def test_tag_delivery_names_the_delivery_in_every_report_of_its_scope(
    settings: Settings, transport: LocalTransport
) -> None:
    sentry.tag_delivery({"task_id": "t1"})  # without Sentry: nothing happens, nothing fails
    sentry.init_sentry(replace(settings, sentry_dsn=Secret(DSN)), "worker", transport=transport)
    with sentry_sdk.new_scope():
        sentry.tag_delivery(
            {
                "task_id": "t\u202e9",
                "type": "annotation",
                "event": "audit",
                "delivery_id": "d9",
                "body": {"note": SECRET_MARK},
            }
        )
        try:
            raise HandlerError("late failure")
        except HandlerError:
            sentry_sdk.capture_exception()
    [event] = transport.events()
    assert event["tags"]["task_id"] == "t\\u202e9"
    tags = event["tags"]
    assert (tags["type"], tags["event"], tags["delivery_id"]) == ("annotation", "audit", "d9")
    assert SECRET_MARK.encode() not in transport.raw()


class HandlerError(Exception):
    """A handler's failure, reported after its job's context is gone."""

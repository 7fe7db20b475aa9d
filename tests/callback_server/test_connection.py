"""Redis connections: eviction warnings, TLS options, and logs that never carry a key or a body."""

from __future__ import annotations

import logging
import os
import select
import threading

import pytest
import redis
from flask.testing import FlaskClient

from callback_server.config import Settings
from callback_server.connection import ConnectionStack, connect, eviction_policy, warn_if_evicting
from callback_server.deliveries import Delivery, DeliveryQueue
from tests.support.fixtures import load_fixture
from tests.support.http import post
from tests.support.keys import LIVE_KEY, OLD_LIVE_KEY
from tests.support.processes import wait_for
from tests.support.settings import make_settings


def test_warns_loudly_when_redis_may_evict(
    settings: Settings, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    assert eviction_policy(redis_conn) == "noeviction"
    with caplog.at_level(logging.WARNING):
        warn_if_evicting(connect(settings))
    assert not caplog.records
    redis_conn.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with caplog.at_level(logging.WARNING):
            warn_if_evicting(connect(settings))
    finally:
        redis_conn.config_set("maxmemory-policy", "noeviction")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "REDIS MAY EVICT QUEUED CALLBACKS" in record.getMessage() and "allkeys-lru" in record.getMessage()


def test_unreachable_redis_at_start_is_a_warning_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings("redis://127.0.0.1:9/0")
    with caplog.at_level(logging.WARNING):
        warn_if_evicting(connect(settings))
    assert "cannot check maxmemory-policy" in caplog.text


def test_rediss_urls_accept_heroku_self_signed_certificates() -> None:
    client = connect(make_settings("rediss://:secret@example.com:6380/0"))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] is None
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    blocking = connect(make_settings("redis://localhost:6379/0"), blocking=True)
    assert blocking.connection_pool.connection_kwargs["socket_timeout"] is None


def test_the_stack_reconnects_a_socket_that_redis_closed(redis_conn: redis.Redis) -> None:
    """After a restart or a CLIENT KILL, the next accept goes through instead of failing once."""
    queue = DeliveryQueue(connect(make_settings(_url(redis_conn))))
    assert queue.accept(Delivery.from_body(load_fixture("phonecall"), mode="live"))
    killed = redis_conn.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert queue.accept(Delivery.from_body(load_fixture("annotation"), mode="live"))
    assert redis_conn.llen("rq:queue:callbacks") == 2


def test_the_stack_never_hands_out_a_socket_with_unread_bytes(redis_conn: redis.Redis) -> None:
    stack = ConnectionStack(redis_conn.connection_pool)
    connection = stack.get()
    connection.send_command("PING")
    connection.read_response()
    connection.send_command("ECHO", "left unread")  # as if a caller had been cut off mid-exchange
    assert select.select([connection._sock], [], [], 5)[0]  # the stale reply has arrived
    stack.put(connection)
    again = stack.get()
    assert again is connection
    again.send_command("PING")
    assert again.read_response() in (b"PONG", "PONG")  # not the stale ECHO reply


def test_a_forked_child_does_not_use_the_parents_connections(redis_conn: redis.Redis) -> None:
    stack = ConnectionStack(redis_conn.connection_pool)
    parents = stack.get()
    parents.send_command("PING")
    parents.read_response()
    stack.put(parents)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if it got a connection of its own that works
        ok = False
        try:
            child = stack.get()
            child.send_command("PING")
            ok = child is not parents and child.read_response() in (b"PONG", "PONG")
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parents.send_command("PING")  # the parent's socket was left alone
    assert parents.read_response() in (b"PONG", "PONG")


def test_the_stack_opens_at_most_its_limit_and_a_burst_waits_for_a_returned_one(redis_conn: redis.Redis) -> None:
    stack = ConnectionStack(redis_conn.connection_pool, limit=2, timeout=0.3)
    first, second = stack.get(), stack.get()
    assert first is not second
    with pytest.raises(redis.ConnectionError, match="all 2 ack-path connections busy"):
        stack.get()  # nothing comes back within the timeout: a clear error, not a third connection
    handed: list[object] = []
    waiter = threading.Thread(target=lambda: handed.append(stack.get()))
    stack._timeout = 10.0
    waiter.start()
    wait_for(lambda: stack._waiting == 1, what="the caller to wait for a connection")
    stack.put(second)
    waiter.join(timeout=10)
    assert handed == [second]  # the waiter got the returned connection, and no new one was made
    assert stack._made == 2


def test_the_web_clients_pool_waits_at_its_size_instead_of_opening_more(redis_conn: redis.Redis) -> None:
    client = connect(make_settings(_url(redis_conn), redis_pool_size=2, redis_timeout=0.2))
    pool = client.connection_pool
    held = [pool.get_connection(), pool.get_connection()]
    with pytest.raises(redis.ConnectionError):
        pool.get_connection()
    for connection in held:
        pool.release(connection)
    assert client.ping()


def _url(conn: redis.Redis) -> str:
    kwargs = conn.get_connection_kwargs()
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def test_logs_carry_ids_and_outcomes_but_never_keys_or_bodies(
    client: FlaskClient, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    body = load_fixture("phonecall")
    with caplog.at_level(logging.DEBUG):
        post(client, body)
        post(client, body)
        post(client, b'{"secret_payload_marker": 1}')
        post(client, body, key="wrong-key-attempt")
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for secret in (LIVE_KEY, OLD_LIVE_KEY, "wrong-key-attempt", "alex@example.com", "secret_payload_marker"):
        assert secret not in text
    outcomes = [getattr(r, "outcome", None) for r in caplog.records if r.name.startswith("callback_server")]
    assert outcomes[:3] == ["queued", "duplicate", "quarantined"]
    assert "unauthorized" in outcomes
    queued = next(r for r in caplog.records if getattr(r, "outcome", None) == "queued")
    assert queued.task_id == body["task_id"] and queued.type == "phonecall"  # type: ignore[attr-defined]
    assert queued.latency_ms >= 0  # type: ignore[attr-defined]

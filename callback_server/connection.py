"""Redis connections for the web tier (short timeouts) and the workers (blocking reads)."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from callback_server.config import Settings

log = logging.getLogger(__name__)

try:  # gevent's poll (gunicorn.conf.py patches it) waits through its hub: ~15 us for a yes/no.
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a requirement; this is for a bare library use
    _poll = select.poll


def connect(settings: Settings, *, blocking: bool = False) -> redis.Redis:
    """A client for ``REDIS_URL``.

    The web tier's client gives up after ``REDIS_TIMEOUT`` per try with one retry (a pooled
    socket may be stale after a Redis restart), so an unreachable Redis becomes a 503 within
    about three seconds. Its pool holds at most ``REDIS_POOL_SIZE`` connections: a burst waits
    up to ``REDIS_TIMEOUT`` for one instead of opening more than the plan allows (Heroku Redis
    mini: 20 for every process together). Workers block on the queue, one job at a time, so
    theirs has no read timeout and no cap.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
        # A lone surrogate (JSON may escape one into a response) in text written to Redis, say a
        # handler's error quoting the body, is written escaped instead of failing the write: a
        # strict encoder made the horse die recording the failure, and the real error was lost.
        "encoding_errors": "backslashreplace",
    }
    if blocking:
        options["socket_timeout"] = None
        options["socket_keepalive"] = True
        pool = redis.ConnectionPool.from_url(settings.redis_url, **_tls_options(settings), **options)
    else:
        options["socket_timeout"] = settings.redis_timeout
        options["retry"] = Retry(NoBackoff(), 1)
        pool = redis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_pool_size,
            timeout=settings.redis_timeout,
            **_tls_options(settings),
            **options,
        )
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


def _tls_options(settings: Settings) -> dict[str, Any]:
    if settings.redis_url.startswith("rediss://"):
        # Heroku Redis serves TLS with a self-signed certificate, so it cannot be verified.
        return {"ssl_cert_reqs": None}
    return {}


def eviction_policy(connection: redis.Redis) -> str | None:
    """Redis's maxmemory-policy, read from INFO (Heroku Redis forbids CONFIG GET); None if unreachable."""
    try:
        info = connection.info("memory")
    except redis.RedisError:
        return None
    policy = info.get("maxmemory_policy")
    return str(policy) if policy is not None else None


def warn_if_evicting(connection: redis.Redis) -> None:
    """Log loudly when Redis may evict keys: an evicted job is a lost callback."""
    policy = eviction_policy(connection)
    if policy is None:
        log.warning("redis unreachable at start; cannot check maxmemory-policy", extra={"outcome": "unknown"})
    elif policy != "noeviction":
        log.error(
            "REDIS MAY EVICT QUEUED CALLBACKS: maxmemory-policy is %s; set it to noeviction "
            "(heroku redis:maxmemory --policy noeviction)",
            policy,
            extra={"outcome": "misconfigured"},
        )


HEADROOM_WARNING = 0.8
"""Share of ``maxmemory`` past which Redis memory is reported as high (a full Redis answers 503s)."""


def memory(connection: redis.Redis) -> tuple[int, int]:
    """Redis memory used and its limit in bytes (limit 0: none set)."""
    info = connection.info("memory")
    return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))


def memory_is_high(used: int, limit: int) -> bool:
    """Whether memory is past the headroom warning (never, without a limit)."""
    return limit > 0 and used > HEADROOM_WARNING * limit


def warn_if_memory_high(connection: redis.Redis) -> bool:
    """Log ``REDIS MEMORY HIGH`` when used memory passes 80 % of maxmemory; True if it did."""
    used, limit = memory(connection)
    if not memory_is_high(used, limit):
        return False
    log.error(
        "REDIS MEMORY HIGH: %d of %d MB used (%.0f %%): at maxmemory every callback is answered 503; "
        "see docs/capacity.md",
        used // 2**20,
        limit // 2**20,
        100 * used / limit,
        extra={"outcome": "memory_high"},
    )
    return True


class ConnectionStack:
    """Connections that one hot path keeps for itself, beside the client's pool, at most ``limit`` of them.

    redis-py's pool spends, on every checkout and return, a lock, four metric updates, an event
    dispatch and a readability check that under gevent goes through the hub: ~50 us of CPU per
    callback on the ack path (bench/ingest.py). The stack makes the same check, that an idle
    socket holds no unread bytes and was not closed by Redis (a restart), with one zero-timeout
    system poll, and reconnects the socket when it fails. A caller returns a connection only
    after a complete exchange, and disconnects it on any failure, so nothing stale is reused.

    With ``limit`` connections out, a caller waits up to ``timeout`` seconds for one to come back
    (gevent patches the condition), then gets :class:`redis.ConnectionError`: a burst of slow
    Redis round trips cannot open more connections than the plan allows.
    """

    def __init__(self, pool: redis.ConnectionPool, limit: int | None = None, timeout: float = 1.0) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._pid = os.getpid()
        self._limit = limit
        self._timeout = timeout
        self._made = 0
        self._waiting = 0
        self._returned = threading.Condition()

    def get(self) -> AbstractConnection:
        """An idle connection (reconnected if its socket is not clean), a new one, or one given back in time."""
        if self._pid != os.getpid():
            # A forked child (gunicorn's workers): the parent's sockets are not this process's to use.
            self._idle, self._pid, self._made, self._waiting = [], os.getpid(), 0, 0
            self._returned = threading.Condition()
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._new_or_returned()
        sock = connection._sock
        if sock is not None and _readable(sock.fileno()):
            connection.disconnect()  # unread bytes or closed by Redis: start a fresh one
        return connection

    def _new_or_returned(self) -> AbstractConnection:
        with self._returned:
            if self._limit is None or self._made < self._limit:
                self._made += 1
                new: AbstractConnection = self._pool.connection_class(**self._pool.connection_kwargs)
                return new
            self._waiting += 1
            try:
                deadline = time.monotonic() + self._timeout
                while not self._idle:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._returned.wait(remaining) and not self._idle:
                        raise redis.ConnectionError(f"all {self._limit} ack-path connections busy (REDIS_POOL_SIZE)")
                return self._idle.pop()
            finally:
                self._waiting -= 1

    def put(self, connection: AbstractConnection) -> None:
        """Give back a connection whose last exchange completed (or that was disconnected)."""
        self._idle.append(connection)
        if self._waiting:  # only a burst at the limit pays for the lock
            with self._returned:
                self._returned.notify()


def _readable(fd: int) -> bool:
    poller = _poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))

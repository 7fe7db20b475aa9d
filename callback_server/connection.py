"""Redis connections for the web tier (short timeouts) and the workers (blocking reads)."""

from __future__ import annotations

import logging
import os
import select
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
    about three seconds. Workers block on the queue, so theirs has no read timeout.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
    }
    if blocking:
        options["socket_timeout"] = None
        options["socket_keepalive"] = True
    else:
        options["socket_timeout"] = settings.redis_timeout
        options["retry"] = Retry(NoBackoff(), 1)
    if settings.redis_url.startswith("rediss://"):
        # Heroku Redis serves TLS with a self-signed certificate, so it cannot be verified.
        options["ssl_cert_reqs"] = None
    return redis.Redis.from_url(settings.redis_url, **options)


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
        "see the README's Capacity section",
        used // 2**20,
        limit // 2**20,
        100 * used / limit,
        extra={"outcome": "memory_high"},
    )
    return True


class ConnectionStack:
    """Connections that one hot path keeps for itself, beside the client's pool.

    redis-py's pool spends, on every checkout and return, a lock, four metric updates, an event
    dispatch and a readability check that under gevent goes through the hub: ~50 us of CPU per
    callback on the ack path (bench/ingest.py). The stack makes the same check, that an idle
    socket holds no unread bytes and was not closed by Redis (a restart), with one zero-timeout
    system poll, and reconnects the socket when it fails. A caller returns a connection only
    after a complete exchange, and disconnects it on any failure, so nothing stale is reused.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._pid = os.getpid()

    def get(self) -> AbstractConnection:
        """An idle connection (reconnected if its socket is not clean), or a new one (connects on first send)."""
        if self._pid != os.getpid():
            # A forked child (gunicorn's workers): the parent's sockets are not this process's to use.
            self._idle, self._pid = [], os.getpid()
        try:
            connection = self._idle.pop()
        except IndexError:
            new: AbstractConnection = self._pool.connection_class(**self._pool.connection_kwargs)
            return new
        sock = connection._sock
        if sock is not None and _readable(sock.fileno()):
            connection.disconnect()  # unread bytes or closed by Redis: start a fresh one
        return connection

    def put(self, connection: AbstractConnection) -> None:
        """Give back a connection whose last exchange completed (or that was disconnected)."""
        self._idle.append(connection)


def _readable(fd: int) -> bool:
    poller = _poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))

"""Redis clients for fault tests: one whose server is not there."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callback_server.embedded import free_port


def unreachable_redis() -> redis.Redis:
    """A client of a port nothing listens on that fails at once: redis-py 8 would otherwise retry a refused
    connection three times with backoff (four seconds a test)."""
    return redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))

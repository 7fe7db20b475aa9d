"""The console's locks: basic auth in constant time, a per-client delay after failures, CSRF tokens.

Nothing here sleeps. A client that keeps failing is told to come back later (429 with
``Retry-After``) and its later attempts are refused unchecked until then, so guessing costs the
guesser time and costs a gevent worker nothing; a typo or two is free.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import redis

DASHBOARD_USER = "ops"
"""The basic-auth user name; the password is DASHBOARD_PASSWORD."""

FAILURE_PREFIX = "scb:dashboard:authfail"
"""Per-client hashes of failed logins: count and the time before which no attempt is checked."""

FREE_FAILURES = 3
"""Failed logins a client may make before it has to wait."""

MAX_DELAY = 300
"""Longest wait (seconds) imposed on a client; the delay doubles per failure up to this."""

GLOBAL_FREE = 30
"""Failed logins from all clients together before clients never seen to log in must wait too."""

KNOWN_CLIENTS_KEY = "scb:dashboard:known_clients"
"""Sorted set of clients that logged in (score: when): a flood of failures from many addresses
does not slow them down."""

KNOWN_FOR = 30 * 24 * 3600
"""Seconds a client stays known after its last login."""

GLOBAL_FAILURES = f"{FAILURE_PREFIX}:*everyone*"
"""The hash of everyone's failed logins (a client key is 24 hex characters: it cannot collide)."""

FAILURE_MEMORY = 900
"""Seconds a client's failures are remembered after its last one."""

CSRF_LIFETIME = 8 * 3600
"""Seconds a CSRF token stays valid: a page left open for a working day can still act."""


def client_key(remote_addr: str | None, forwarded_for: str | None, *, behind_router: bool) -> str:
    """Who is knocking, as far as it can be known.

    Behind Heroku's router, the last X-Forwarded-For hop: the router appends the peer it saw, and a
    client can only prepend. Anywhere else the header is the client's own words (rotating it
    would dodge the delay, and naming the operator's address would lock the operator out), so
    the socket's peer.
    """
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    who = hops[-1] if behind_router and hops else (remote_addr or "unknown")
    return hashlib.sha256(who.encode("utf-8", "replace")).hexdigest()[:24]


def credentials_match(username: str | None, password: str | None, expected: bytes) -> bool:
    """User and password compared in constant time, both always (no early exit on a wrong user)."""
    user_ok = hmac.compare_digest((username or "").encode("utf-8", "replace"), DASHBOARD_USER.encode())
    password_ok = hmac.compare_digest((password or "").encode("utf-8", "replace"), expected)
    return user_ok and password_ok


@dataclass(frozen=True)
class Throttle:
    """Failed logins per client, and from all clients together, in Redis so every web process sees them.

    Past :data:`GLOBAL_FREE` failures from everyone, clients never seen to log in wait as well:
    spreading guesses over many addresses does not escape the delay, and the operator, known
    from an earlier login, is not locked out by it.
    """

    connection: redis.Redis
    free: int = FREE_FAILURES
    max_delay: int = MAX_DELAY
    global_free: int = GLOBAL_FREE

    def check(self, client: str, now: float | None = None) -> tuple[int, bool]:
        """Whole seconds this client must still wait before an attempt is checked (0: go ahead), and
        whether a login should be noted (:meth:`succeeded`): failures to forget, or not known lately."""
        moment = time.time() if now is None else now
        pipe = self.connection.pipeline(transaction=False)
        pipe.hmget(f"{FAILURE_PREFIX}:{client}", "count", "until")
        pipe.hget(GLOBAL_FAILURES, "until")
        pipe.zscore(KNOWN_CLIENTS_KEY, client)
        (count, until), everyone_until, known = pipe.execute()
        waits = [float(until) - moment if until is not None else 0.0]
        if everyone_until is not None and known is None:
            waits.append(float(everyone_until) - moment)
        stale = known is None or float(known) < moment - 24 * 3600
        return max(int(max(waits) + 0.999), 0), count is not None or stale

    def wait(self, client: str, now: float | None = None) -> int:
        """Whole seconds this client must still wait before an attempt is checked (0: go ahead)."""
        return self.check(client, now)[0]

    def failed(self, client: str, now: float | None = None) -> int:
        """Count a failed login, for the client and for everyone; returns the client's delay (s) now imposed."""
        moment = time.time() if now is None else now
        self._count(GLOBAL_FAILURES, self.global_free, moment)
        return self._count(f"{FAILURE_PREFIX}:{client}", self.free, moment)

    def _count(self, key: str, free: int, moment: float) -> int:
        count = int(self.connection.hincrby(key, "count", 1))
        delay = 0 if count <= free else min(2 ** (count - free - 1), self.max_delay)
        pipe = self.connection.pipeline(transaction=False)
        if delay:
            pipe.hset(key, "until", moment + delay)
        pipe.expire(key, FAILURE_MEMORY + delay)
        pipe.execute()
        return delay

    def succeeded(self, client: str, now: float | None = None) -> None:
        """Forget a client's failures once it gets in, and know it from now on."""
        moment = time.time() if now is None else now
        pipe = self.connection.pipeline(transaction=False)
        pipe.delete(f"{FAILURE_PREFIX}:{client}")
        pipe.zadd(KNOWN_CLIENTS_KEY, {client: moment})
        pipe.zremrangebyscore(KNOWN_CLIENTS_KEY, "-inf", moment - KNOWN_FOR)
        pipe.expire(KNOWN_CLIENTS_KEY, KNOWN_FOR)
        pipe.execute()


CSRF_SECRET_KEY = "scb:dashboard:csrf_secret"
"""Redis string: the deploy's random CSRF secret, made once by the first web process that needs it."""


def csrf_key(connection: redis.Redis, password: bytes) -> bytes:
    """The key tokens are made with: a random per-deploy secret (kept in Redis) and the password.

    Keyed by the password alone, a token seen in a page confirmed password guesses offline; with
    the random secret it confirms nothing. The password still takes part, so changing it voids
    every token issued before.
    """
    connection.set(CSRF_SECRET_KEY, secrets.token_hex(32), nx=True)
    secret = connection.get(CSRF_SECRET_KEY)
    if not secret:
        raise redis.RedisError("the CSRF secret could not be read back")
    return hmac.new(bytes(secret), b"scb-dashboard-csrf\0" + password, hashlib.sha256).digest()


def csrf_token(key: bytes, now: float | None = None) -> str:
    """A token only a holder of ``key`` (:func:`csrf_key`) can make: issue time and its HMAC (no session needed)."""
    stamp = str(int(time.time() if now is None else now))
    mac = hmac.new(key, stamp.encode(), hashlib.sha256).hexdigest()
    return f"{stamp}.{mac}"


def csrf_valid(token: str | None, key: bytes, now: float | None = None) -> bool:
    """True for a token made with ``key`` within :data:`CSRF_LIFETIME`."""
    if not token or token.count(".") != 1:
        return False
    stamp, mac = token.split(".")
    if not stamp.isdigit():
        return False
    expected = hmac.new(key, stamp.encode(), hashlib.sha256).hexdigest()
    age = (time.time() if now is None else now) - int(stamp)
    return hmac.compare_digest(mac.encode(), expected.encode()) and -60 <= age <= CSRF_LIFETIME

"""Settings read once from the environment into a frozen, typed object.

Fail closed: a missing or malformed value raises :class:`ConfigError` naming the
variable, so a misconfigured dyno crashes at boot instead of accepting callbacks it
cannot authenticate or store.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from callback_server import defaults
from callback_server.exceptions import ConfigError


class Secret:
    """A string that never prints: repr, str and logs all show ``'**********'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that needs it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "'**********'"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _keys(env: Mapping[str, str], name: str, *, required: bool) -> tuple[Secret, ...]:
    raw = env.get(name, "")
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    if required and not keys:
        raise ConfigError(
            f"{name} is not set: the live callback auth key (from Scale's dashboard) is required; "
            "give several comma-separated keys to rotate without downtime"
        )
    for key in keys:
        if not key.isascii() or not key.isprintable():
            raise ConfigError(f"{name} holds a key with non-ASCII or control characters")
        _long_enough(env, name, key, "key")
    return tuple(Secret(k) for k in keys)


def _long_enough(env: Mapping[str, str], name: str, secret: str, what: str) -> None:
    """Refuse a guessable secret; only the local dev stack (CALLBACK_SERVER_DEV=1) is exempt."""
    if len(secret) < defaults.MIN_SECRET_LENGTH and env.get(defaults.DEV_FLAG, "").strip() != "1":
        raise ConfigError(
            f"{name} holds a {what} of {len(secret)} characters: at least {defaults.MIN_SECRET_LENGTH} "
            "are required (a long random value: `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def read_int(
    env: Mapping[str, str],
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    error: type[Exception] = ConfigError,
) -> int:
    """A whole number from the environment (``default`` when unset); ``error`` names the variable.

    Shared with the simulator, which passes its own error class.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise error(f"{name} must be a whole number, got {raw!r}") from None
    if maximum is not None and not minimum <= value <= maximum:
        raise error(f"{name} must be between {minimum} and {maximum}, got {value}")
    if value < minimum:
        raise error(f"{name} must be at least {minimum}, got {value}")
    return value


def read_float(
    env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0, error: type[Exception] = ConfigError
) -> float:
    """A finite number from the environment (``default`` when unset); ``error`` names the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise error(f"{name} must be a number, got {raw!r}") from None
    if not (math.isfinite(value) and value >= minimum):  # nan compares false
        raise error(f"{name} must be a finite number, at least {minimum}, got {raw}")
    return value


def _intervals(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated whole seconds, got {raw!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"{name} must not hold negative intervals, got {raw!r}")
    return values


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def callback_handler_modules(env: Mapping[str, str]) -> tuple[str, ...]:
    """CALLBACK_HANDLERS: the handler modules a worker imports (read alone by ``handlers``, which needs no other)."""
    return _names(env, "CALLBACK_HANDLERS") or defaults.CALLBACK_HANDLERS


RENAMED = {"RECONCILE_WINDOW": "RECONCILE_LOOKBACK"}
"""Variables that were renamed and are no longer read: a deploy that still sets one stops, naming the new
name, instead of silently running on the default."""


def _refuse_renamed(env: Mapping[str, str]) -> None:
    for old, new in RENAMED.items():
        if env.get(old, "").strip():
            raise ConfigError(f"{old} is no longer read: it was renamed {new}; set {new} and unset {old}")


def _projects(env: Mapping[str, str]) -> tuple[str, ...]:
    """SCALE_PROJECTS: project names, each swept on its own; a name is sent as a query value, so text only."""
    names = _names(env, "SCALE_PROJECTS")
    for name in names:
        if not name.isprintable():
            raise ConfigError(f"SCALE_PROJECTS holds a project name with control characters: {name!r}")
    if len(set(names)) != len(names):
        raise ConfigError("SCALE_PROJECTS names a project twice")
    return names


def log_format_from_env(env: Mapping[str, str] | None = None) -> str:
    """LOG_FORMAT: ``logfmt`` (the default) or ``json``; read on its own, as logging starts before the rest."""
    env = os.environ if env is None else env
    raw = env.get("LOG_FORMAT", "").strip().lower() or defaults.LOG_FORMAT
    if raw not in defaults.LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(defaults.LOG_FORMATS)}, got {raw!r}")
    return raw


def _sentry_dsn(env: Mapping[str, str]) -> Secret | None:
    """SENTRY_DSN: ``https://<public key>@<host>/<project id>``; checked here so a typo stops the boot."""
    raw = env.get("SENTRY_DSN", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if (
        parts.scheme not in ("http", "https")
        or not parts.username
        or not parts.hostname
        or not parts.path.strip("/").split("/")[-1].isdigit()
    ):
        # Not echoed: the DSN holds the project's key.
        raise ConfigError("SENTRY_DSN must be a Sentry DSN: https://<key>@<host>/<project id>")
    return Secret(raw)


def _metrics_token(env: Mapping[str, str]) -> Secret | None:
    """METRICS_TOKEN: the bearer token of /metrics (no token, no route); long and printable."""
    raw = env.get("METRICS_TOKEN", "").strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isprintable() or " " in raw:
        raise ConfigError("METRICS_TOKEN must be printable ASCII without spaces (it travels in a header)")
    _long_enough(env, "METRICS_TOKEN", raw, "token")
    return Secret(raw)


def _redis_url(env: Mapping[str, str]) -> str:
    url = env.get("REDIS_URL", "").strip()
    if not url:
        raise ConfigError(
            "REDIS_URL is not set: point it at Redis (Heroku Redis sets it), "
            "or use `python -m callback_server dev`, which starts an embedded Redis"
        )
    if not url.startswith(("redis://", "rediss://", "unix://")):
        # Not echoed: a URL without its scheme may start with the password.
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return url


@dataclass(frozen=True)
class Settings:
    """Everything the web and worker processes read from the environment."""

    redis_url: str
    live_keys: tuple[Secret, ...]
    test_keys: tuple[Secret, ...] = ()
    max_content_length: int = defaults.MAX_CONTENT_LENGTH
    dedup_ttl: int = defaults.DEDUP_TTL
    redis_timeout: float = defaults.REDIS_TIMEOUT
    redis_pool_size: int = defaults.REDIS_POOL_SIZE
    callback_queue: str = defaults.CALLBACK_QUEUE
    handler_timeout: int = defaults.HANDLER_TIMEOUT
    handler_retry_intervals: tuple[int, ...] = defaults.HANDLER_RETRY_INTERVALS
    effects_ttl: int = defaults.EFFECTS_TTL
    quarantine_ttl: int = defaults.QUARANTINE_TTL
    ledger_ttl: int = defaults.LEDGER_TTL
    worker_heartbeat: int = defaults.WORKER_HEARTBEAT
    worker_maintenance_interval: int = defaults.WORKER_MAINTENANCE_INTERVAL
    worker_processes: int = defaults.WORKER_PROCESSES
    callback_handlers: tuple[str, ...] = defaults.CALLBACK_HANDLERS
    dashboard_password: Secret | None = None
    scale_api_key: Secret | None = None
    scale_api_url: str = defaults.SCALE_API_URL
    scale_projects: tuple[str, ...] = ()
    reconcile_lookback: int = defaults.RECONCILE_LOOKBACK
    reconcile_overlap: int = defaults.RECONCILE_OVERLAP
    reconcile_interval: int = defaults.RECONCILE_INTERVAL
    metrics_token: Secret | None = None
    sentry_dsn: Secret | None = None
    log_format: str = defaults.LOG_FORMAT
    behind_router: bool = False
    """Running on Heroku (``DYNO`` is set): its router appends the client's address to X-Forwarded-For."""
    local_dev: bool = False
    """``make run``'s stack (CALLBACK_SERVER_DEV=1): short local secrets, and only localhost names as Host."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raise :class:`ConfigError` naming the first bad one."""
        env = os.environ if env is None else env
        dedup_ttl = read_int(env, "DEDUP_TTL", defaults.DEDUP_TTL, minimum=defaults.MIN_DEDUP_TTL)
        _refuse_renamed(env)
        reconcile_lookback = read_int(env, "RECONCILE_LOOKBACK", defaults.RECONCILE_LOOKBACK, minimum=60)
        if reconcile_lookback > dedup_ttl:
            # Older deliveries are forgotten, so the reconciler would queue them a second time.
            raise ConfigError(f"RECONCILE_LOOKBACK ({reconcile_lookback}) must not exceed DEDUP_TTL ({dedup_ttl})")
        reconcile_overlap = read_int(env, "RECONCILE_OVERLAP", defaults.RECONCILE_OVERLAP, minimum=0)
        if reconcile_overlap > reconcile_lookback:
            # A scheduled run would reach back further than a first run, and past what DEDUP_TTL covers.
            raise ConfigError(
                f"RECONCILE_OVERLAP ({reconcile_overlap}) must not exceed RECONCILE_LOOKBACK ({reconcile_lookback})"
            )
        retry_intervals = _intervals(env, "HANDLER_RETRY_INTERVALS", defaults.HANDLER_RETRY_INTERVALS)
        effects_ttl = read_int(env, "EFFECTS_TTL", defaults.EFFECTS_TTL, minimum=defaults.MIN_DEDUP_TTL)
        if effects_ttl < defaults.FAILURE_TTL + sum(retry_intervals):
            # A failed job can be replayed until FAILURE_TTL; its completed handlers must still be known.
            raise ConfigError(
                f"EFFECTS_TTL ({effects_ttl}) must be at least the failed-job lifetime plus the retry "
                f"schedule ({defaults.FAILURE_TTL + sum(retry_intervals)} s)"
            )
        dashboard = env.get("DASHBOARD_PASSWORD", "").strip()
        if dashboard:
            _long_enough(env, "DASHBOARD_PASSWORD", dashboard, "password")
        api_key = env.get("SCALE_API_KEY", "").strip()
        return cls(
            redis_url=_redis_url(env),
            live_keys=_keys(env, "SCALE_CALLBACK_AUTH_KEY", required=True),
            test_keys=_keys(env, "SCALE_TEST_CALLBACK_AUTH_KEY", required=False),
            max_content_length=read_int(env, "MAX_CONTENT_LENGTH", defaults.MAX_CONTENT_LENGTH, minimum=1024),
            dedup_ttl=dedup_ttl,
            redis_timeout=read_float(env, "REDIS_TIMEOUT", defaults.REDIS_TIMEOUT, minimum=0.05),
            redis_pool_size=read_int(env, "REDIS_POOL_SIZE", defaults.REDIS_POOL_SIZE, minimum=1, maximum=1000),
            callback_queue=env.get("CALLBACK_QUEUE", "").strip() or defaults.CALLBACK_QUEUE,
            handler_timeout=read_int(env, "HANDLER_TIMEOUT", defaults.HANDLER_TIMEOUT, minimum=1),
            handler_retry_intervals=retry_intervals,
            effects_ttl=effects_ttl,
            quarantine_ttl=read_int(env, "QUARANTINE_TTL", defaults.QUARANTINE_TTL, minimum=3600),
            ledger_ttl=read_int(env, "LEDGER_TTL", defaults.LEDGER_TTL, minimum=3600),
            # Whole seconds: RQ arms these with signal.alarm().
            worker_heartbeat=read_int(env, "WORKER_HEARTBEAT", defaults.WORKER_HEARTBEAT, minimum=1),
            worker_maintenance_interval=read_int(
                env, "WORKER_MAINTENANCE_INTERVAL", defaults.WORKER_MAINTENANCE_INTERVAL, minimum=1
            ),
            worker_processes=read_int(env, "WORKER_PROCESSES", defaults.WORKER_PROCESSES, minimum=1),
            callback_handlers=callback_handler_modules(env),
            dashboard_password=Secret(dashboard) if dashboard else None,
            scale_api_key=Secret(api_key) if api_key else None,
            scale_api_url=(env.get("SCALE_API_URL", "").strip() or defaults.SCALE_API_URL).rstrip("/"),
            scale_projects=_projects(env),
            reconcile_lookback=reconcile_lookback,
            reconcile_overlap=reconcile_overlap,
            reconcile_interval=read_int(env, "RECONCILE_INTERVAL", defaults.RECONCILE_INTERVAL, minimum=60),
            metrics_token=_metrics_token(env),
            sentry_dsn=_sentry_dsn(env),
            log_format=log_format_from_env(env),
            behind_router=bool(env.get("DYNO", "").strip()),
            local_dev=env.get(defaults.DEV_FLAG, "").strip() == "1",
        )


@dataclass(frozen=True)
class ServerSettings:
    """What gunicorn.conf.py reads: the port, the number of web processes and the log format."""

    port: int
    web_concurrency: int
    log_format: str = defaults.LOG_FORMAT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, cpu_count: int | None = None) -> ServerSettings:
        """PORT (Heroku sets it) and WEB_CONCURRENCY (default: two per core, plus one)."""
        env = os.environ if env is None else env
        cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
        port = read_int(env, "PORT", defaults.PORT, minimum=1)
        if port > 65535:
            raise ConfigError(f"PORT must be at most 65535, got {port}")
        return cls(
            port=port,
            web_concurrency=read_int(env, "WEB_CONCURRENCY", 2 * cores + 1, minimum=1),
            log_format=log_format_from_env(env),
        )

"""``doctor``: is this deployment set up right, end to end?

Each check prints one line: ``ok``, ``warn`` or ``FAIL``, what it found, and for a failure what
to do about it; any failure makes the command exit non-zero. It reads the configuration as the
processes read it (the same environment), so run it where they run (``heroku run python -m
callback_server doctor --url https://<app>.herokuapp.com/callback``). With ``--url`` it sends
the probe (:mod:`callback_server.probe`) through the public URL and waits for a worker to
process it. No key or password is ever printed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
import requests

from callback_server import defaults
from callback_server.auth import HEADER
from callback_server.config import ServerSettings, Settings
from callback_server.connection import connect
from callback_server.exceptions import CallbackServerError
from callback_server.probe import new_nonce, notice_key, probe_body
from callback_server.reconcile import RUNS_KEPT, Marks, RunLog
from callback_server.render import printable
from callback_server.scale_api import ScaleAPI, ScaleAPIError
from callback_server.status import read_status
from callback_server.times import parse_instant, stamp

OK, WARN, FAIL = "ok", "warn", "FAIL"

MEMORY_WARN = 0.8
"""Share of maxmemory above which doctor warns: under noeviction a full Redis refuses callbacks (503)."""

CONNECTIONS_WARN = 0.8
"""Share of Redis's maxclients above which doctor warns: at the limit a process cannot connect."""

PROBE_TIMEOUT = 30.0
"""Seconds doctor waits for a worker to process the probe."""

HTTP_TIMEOUT = 10.0
"""Seconds per HTTP request doctor makes (the probe's POST, the API's list call)."""

CLOCK_SLACK = 600
"""Seconds past two RECONCILE_INTERVALs after which the clock's last scheduled run counts as late."""


@dataclass(frozen=True)
class Check:
    """One check's verdict: what was looked at, what was found, and what to do when it is not ``ok``."""

    name: str
    status: str
    found: str
    advice: str = ""

    def line(self) -> str:
        """The one line doctor prints for it (escaped: a found value may come from a server)."""
        text = f"{self.status:<4}  {self.name}: {self.found}"
        if self.advice and self.status != OK:
            text += f"  -> {self.advice}"
        return printable(text)


def run_doctor(env: Mapping[str, str], *, url: str | None = None, probe_timeout: float = PROBE_TIMEOUT) -> list[Check]:
    """Every check, in order; the Redis-bound ones only once Redis answers."""
    checks: list[Check] = []
    try:
        settings = Settings.from_env(env)
    except CallbackServerError as exc:
        return [Check("configuration", FAIL, exc.message, "fix that variable (heroku config:set NAME=value)")]
    try:
        server = ServerSettings.from_env(env)
    except CallbackServerError as exc:
        checks.append(Check("configuration", FAIL, exc.message, "fix that variable (heroku config:set NAME=value)"))
    else:
        checks.append(
            Check(
                "configuration",
                OK,
                f"every variable parses (web: PORT {server.port}, WEB_CONCURRENCY {server.web_concurrency})",
            )
        )
    checks.extend(check_keys(settings, env))
    checks.append(check_handlers(settings))
    connection = connect(settings)
    try:
        reachable = check_redis_reachable(settings, connection)
        checks.append(reachable)
        if reachable.status == OK:
            checks.extend(check_redis(settings, connection))
        checks.append(check_scale_api(settings))
        if reachable.status == OK:
            checks.append(check_workers(settings, connection))
            checks.append(check_clock(settings, connection))
            if url is not None:
                checks.append(check_probe(settings, connection, url, probe_timeout))
        elif url is not None:
            checks.append(
                Check(
                    "probe",
                    FAIL,
                    "not sent: Redis is unreachable, so its processing cannot be seen",
                    "make Redis reachable first",
                )
            )
    finally:
        connection.close()
    return checks


# --- handlers -------------------------------------------------------------------------------------


def check_handlers(settings: Settings) -> Check:
    """CALLBACK_HANDLERS imports, as a worker imports it at start: a module that does not would stop every worker."""
    from workers.listing import load_handlers  # late: only doctor loads the handlers' own code

    modules = ", ".join(settings.callback_handlers)
    try:
        rows = load_handlers(settings.callback_handlers)
    except CallbackServerError as exc:
        return Check(
            "handlers",
            FAIL,
            exc.message,
            "fix that module or CALLBACK_HANDLERS; `python -m callback_server handlers` lists what loads",
        )
    types = len({row.task_type for row in rows})
    if not rows:
        return Check(
            "handlers",
            WARN,
            f"{modules} registered no handler: every delivery goes to the fallback (scb:unhandled)",
            "decorate your functions with @handles(...) in the modules CALLBACK_HANDLERS names",
        )
    return Check("handlers", OK, f"{len(rows)} handler(s) for {types} task type(s) from {modules}")


# --- keys -----------------------------------------------------------------------------------------


def check_keys(settings: Settings, env: Mapping[str, str]) -> list[Check]:
    """Callback keys long enough, the test key apart from the live ones, and no dev relaxation."""
    checks = []
    short = [
        name
        for name, keys in (
            ("SCALE_CALLBACK_AUTH_KEY", settings.live_keys),
            ("SCALE_TEST_CALLBACK_AUTH_KEY", settings.test_keys),
        )
        if any(len(k.reveal()) < defaults.MIN_SECRET_LENGTH for k in keys)
    ]
    if short:
        checks.append(
            Check(
                "callback keys",
                FAIL,
                f"{', '.join(short)} holds a key under "
                f"{defaults.MIN_SECRET_LENGTH} characters (allowed only by {defaults.DEV_FLAG}=1)",
                "set a long random key here and in Scale's dashboard; unset "
                f"{defaults.DEV_FLAG} (only `make run` sets it)",
            )
        )
    elif set(settings.live_keys) & set(settings.test_keys):
        checks.append(
            Check(
                "callback keys",
                FAIL,
                "a key is both live and test: test callbacks would pass as live",
                "give SCALE_TEST_CALLBACK_AUTH_KEY the account's test key only",
            )
        )
    else:
        test = f", {len(settings.test_keys)} test" if settings.test_keys else ", no test key"
        checks.append(
            Check(
                "callback keys",
                OK,
                f"{len(settings.live_keys)} live{test}, each at least {defaults.MIN_SECRET_LENGTH} characters",
            )
        )
    if env.get(defaults.DEV_FLAG, "").strip() == "1":
        checks.append(
            Check(
                "dev mode",
                WARN,
                f"{defaults.DEV_FLAG}=1 accepts short keys and passwords",
                "unset it anywhere but `make run`",
            )
        )
    return checks


# --- redis ----------------------------------------------------------------------------------------


def redis_location(url: str) -> str:
    """Where REDIS_URL points, without its password: ``rediss://host:port/db``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path or ''}"


def _is_local(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redis_reachable(settings: Settings, connection: redis.Redis) -> Check:
    """Redis answers PING; its version in the line."""
    where = redis_location(settings.redis_url)
    try:
        connection.ping()
        version = connection.info("server").get("redis_version", "?")
    except redis.RedisError as exc:
        return Check(
            "redis",
            FAIL,
            f"{where} unreachable ({type(exc).__name__}: {printable(exc)})",
            "check REDIS_URL (heroku redis:info) and that Redis is up",
        )
    return Check("redis", OK, f"{where} answers (redis {version})")


def check_redis(settings: Settings, connection: redis.Redis) -> list[Check]:
    """Eviction policy, memory headroom, persistence, TLS."""
    memory = connection.info("memory")
    checks = []
    policy = str(memory.get("maxmemory_policy", "?"))
    if policy == "noeviction":
        checks.append(Check("redis eviction", OK, "maxmemory-policy noeviction"))
    else:
        checks.append(
            Check(
                "redis eviction",
                FAIL,
                f"maxmemory-policy {policy}: Redis may evict queued callbacks",
                "set it to noeviction (heroku redis:maxmemory --policy noeviction)",
            )
        )
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    if not limit:
        checks.append(Check("redis memory", OK, f"{used / 2**20:.1f} MB used, no maxmemory limit"))
    else:
        share = used / limit
        found = f"{used / 2**20:.1f} MB of {limit / 2**20:.1f} MB used ({share:.0%})"
        if share > MEMORY_WARN:
            checks.append(
                Check(
                    "redis memory",
                    WARN,
                    found,
                    "when full, callbacks get 503: upgrade the plan, or "
                    "look for a growing queue or failed registry (dashboard)",
                )
            )
        else:
            checks.append(Check("redis memory", OK, found))
    checks.append(_persistence(connection))
    checks.append(_tls(settings))
    checks.append(check_connections(settings, connection))
    return checks


def check_connections(settings: Settings, connection: redis.Redis) -> Check:
    """Connections open against the server's limit (Heroku Redis mini allows 20, every dyno together)."""
    clients = connection.info("clients")
    used, limit = int(clients.get("connected_clients", 0)), int(clients.get("maxclients", 0))
    per_web = f"each web process opens at most {2 * settings.redis_pool_size} (2 x REDIS_POOL_SIZE)"
    if not limit:
        return Check("redis connections", OK, f"{used} open, limit not reported; {per_web}")
    found = f"{used} of {limit} open ({used / limit:.0%}); {per_web}"
    if used > CONNECTIONS_WARN * limit:
        return Check(
            "redis connections",
            WARN,
            found,
            "at the limit new connections are refused and callbacks get 503: lower WEB_CONCURRENCY or "
            "REDIS_POOL_SIZE, or move to a plan with more connections (docs/deploying.md)",
        )
    return Check("redis connections", OK, found)


def _persistence(connection: redis.Redis) -> Check:
    persistence = connection.info("persistence")
    if int(persistence.get("aof_enabled", 0)):
        return Check("redis persistence", OK, "append-only file on")
    try:
        save = str(connection.config_get("save").get("save", ""))
    except redis.ResponseError:
        # Heroku Redis refuses CONFIG: what INFO says is all there is to go on.
        if int(persistence.get("rdb_last_save_time", 0)) and persistence.get("rdb_last_bgsave_status") == "ok":
            return Check("redis persistence", OK, "RDB snapshots (CONFIG not allowed: the save schedule is unknown)")
        return Check(
            "redis persistence",
            WARN,
            "AOF off; CONFIG not allowed, so RDB snapshots cannot be confirmed",
            "check the plan keeps data (heroku redis:info: persistence)",
        )
    if save.strip():
        return Check("redis persistence", OK, f"RDB snapshots (save {save}); a crash loses writes since the last one")
    return Check(
        "redis persistence",
        FAIL,
        "neither AOF nor RDB: a Redis restart loses every queued callback",
        "turn on appendonly yes (or an RDB save schedule), or use a plan with persistence",
    )


def _tls(settings: Settings) -> Check:
    parts = urlsplit(settings.redis_url)
    if parts.scheme == "rediss":
        return Check("redis tls", OK, "rediss:// (TLS; Heroku's self-signed certificate is not verified)")
    if parts.scheme == "unix" or _is_local(parts.hostname):
        return Check("redis tls", OK, f"{parts.scheme}:// on this machine: no network to encrypt")
    return Check(
        "redis tls",
        WARN,
        f"{parts.scheme}:// to {parts.hostname}: callbacks travel unencrypted",
        "use the rediss:// URL (Heroku Redis 6+: REDIS_URL is rediss://; older: REDIS_TLS_URL)",
    )


# --- Scale's API ----------------------------------------------------------------------------------


def check_scale_api(settings: Settings, **api_options: Any) -> Check:
    """SCALE_API_KEY works: one list call per configured project (or the account)."""
    if settings.scale_api_key is None:
        return Check(
            "scale api",
            FAIL,
            "SCALE_API_KEY is not set: lost callbacks are never recovered",
            "set SCALE_API_KEY to the account's live API key (Scale dashboard, API keys)",
        )
    options = {"retries": 1, "timeout": HTTP_TIMEOUT, **api_options}
    api = ScaleAPI(settings.scale_api_url, settings.scale_api_key, **options)
    since = stamp()
    scopes: list[str | None] = list(settings.scale_projects) or [None]
    try:
        for project in scopes:
            params = {"updated_after": since} | ({"project": project} if project is not None else {})
            try:
                next(iter(api.list_tasks(params)), None)
            except ScaleAPIError as exc:
                return _api_failure(settings, project, exc)
    finally:
        api.close()
    kind = (
        " (a test_ key: only test tasks are reconciled)" if settings.scale_api_key.reveal().startswith("test_") else ""
    )
    listed = f"projects {', '.join(settings.scale_projects)}" if settings.scale_projects else "the account"
    return Check("scale api", OK, f"{settings.scale_api_url} lists {listed}{kind}")


def _api_failure(settings: Settings, project: str | None, exc: ScaleAPIError) -> Check:
    if exc.status in (401, 403):
        return Check(
            "scale api",
            FAIL,
            f"Scale refused SCALE_API_KEY: {exc.message}",
            "set SCALE_API_KEY to the account's live API key (Scale dashboard, API keys)",
        )
    if exc.status is not None and exc.status < 500 and exc.status not in (408, 429):
        where = f"project {project!r}" if project is not None else "the account"
        return Check(
            "scale api", FAIL, f"listing {where}: {exc.message}", "check SCALE_PROJECTS names projects of this account"
        )
    return Check(
        "scale api",
        FAIL,
        f"{settings.scale_api_url}: {exc.message}",
        "check SCALE_API_URL (https://api.scale.com/v1) and the network; Scale's status page",
    )


# --- workers and the clock ------------------------------------------------------------------------


def check_workers(settings: Settings, connection: redis.Redis) -> Check:
    """At least one RQ worker listens on CALLBACK_QUEUE, by the status snapshot's one rule of a live worker."""
    status = read_status(connection, settings)
    queue_text = repr(settings.callback_queue)
    dead = f"; {status.workers_lapsed} registered worker(s) died without signing off" if status.workers_lapsed else ""
    if not status.workers:
        return Check(
            "workers",
            FAIL,
            f"no worker listens on queue {queue_text}; callbacks wait unprocessed{dead}",
            "start the worker process (heroku ps:scale worker=1; heroku logs --dyno worker)",
        )
    oldest = f", the oldest for {status.oldest_age:.0f} s" if status.oldest_age is not None else ""
    return Check("workers", OK, f"{status.workers} on queue {queue_text} ({status.depth} waiting{oldest}){dead}")


def check_clock(settings: Settings, connection: redis.Redis) -> Check:
    """The clock's last scheduled reconciliation is recent and complete."""
    runs = [run for run in RunLog(connection).recent(RUNS_KEPT) if run.scheduled]
    if not runs:
        return Check(
            "clock",
            FAIL,
            "no scheduled reconciliation has run",
            "start the clock process (heroku ps:scale clock=1); `reconcile` runs one now",
        )
    last = runs[0]
    started = parse_instant(last.started_at)
    if started is None:
        return Check(
            "clock",
            FAIL,
            f"the last run's start is unreadable: {last.started_at!r}",
            "run `python -m callback_server reconcile` and check `reconcile runs`",
        )
    age = (datetime.now(UTC) - started).total_seconds()
    marks = Marks(connection).all()
    reached = f"; checked up to {min(marks.values())}" if marks else ""
    found = f"last scheduled run {age / 60:.0f} min ago ({'complete' if last.complete else 'INCOMPLETE'}){reached}"
    if age > 2 * settings.reconcile_interval + CLOCK_SLACK:
        return Check(
            "clock",
            FAIL,
            f"{found}; runs are due every {settings.reconcile_interval} s",
            "check the clock process (heroku ps; heroku logs --dyno clock)",
        )
    if not last.complete:
        first = last.errors[0] if last.errors else "no error recorded"
        return Check(
            "clock",
            FAIL,
            f"{found}: {first}",
            "see `python -m callback_server reconcile runs`; the next run resumes where it stopped",
        )
    return Check("clock", OK, found)


# --- the end-to-end probe -------------------------------------------------------------------------


def check_probe(settings: Settings, connection: redis.Redis, url: str, timeout: float) -> Check:
    """POST the probe, signed with the test key, to ``url``; wait until a worker has processed it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Check("probe", FAIL, f"{url!r} is not an http(s) URL", "give --url https://<app>/callback")
    if not settings.test_keys:
        return Check(
            "probe",
            FAIL,
            "SCALE_TEST_CALLBACK_AUTH_KEY is not set: the probe is signed with the test key",
            "set it to the account's test callback key, here and in the app",
        )
    note = "" if parts.scheme == "https" or _is_local(parts.hostname) else " (Scale calls https URLs only)"
    nonce = new_nonce()
    key = notice_key(nonce)
    try:
        answer = requests.post(
            url,
            json=probe_body(nonce),
            timeout=HTTP_TIMEOUT,
            allow_redirects=False,
            headers={HEADER: settings.test_keys[0].reveal()},
        )
    except requests.RequestException as exc:
        return Check(
            "probe",
            FAIL,
            f"{url} unreachable ({type(exc).__name__})",
            "check the URL (heroku apps:info) and that web dynos run (heroku ps)",
        )
    verdict = _probe_answer(url, answer)
    if verdict is not None:
        return verdict
    # The receiver answered only once the job was in Redis; now a worker must take it (no read timeout here).
    waiter = connect(settings, blocking=True)
    try:
        done = waiter.blpop([key], timeout=max(timeout, 0.1))
        waiter.delete(key)
    finally:
        waiter.close()
    if done is None:
        return Check(
            "probe",
            FAIL,
            f"{url} queued the probe, but no worker processed it within {timeout:.0f} s",
            "check the workers (heroku ps; heroku logs --dyno worker) run this version, and that this "
            "REDIS_URL is the app's",
        )
    return Check("probe", OK, f"{url} accepted the probe and a worker processed it{note}")


def _probe_answer(url: str, answer: requests.Response) -> Check | None:
    """None when the receiver queued the probe; else the failure its answer means."""
    status = answer.status_code
    if status == 200:
        try:
            said = answer.json().get("status")
        except (ValueError, AttributeError):
            said = None
        if said == "queued":
            return None
        return Check(
            "probe",
            FAIL,
            f"{url} answered 200 {printable(said)!r}, not queued",
            "this URL is not this receiver's /callback, or it runs another version",
        )
    if status == 401:
        return Check(
            "probe",
            FAIL,
            f"{url} refused the test key (401)",
            "set the same SCALE_TEST_CALLBACK_AUTH_KEY here and in the app (heroku config)",
        )
    if status == 503:
        return Check(
            "probe",
            FAIL,
            f"{url} answered 503: the receiver cannot reach its Redis",
            "check the app's REDIS_URL and Redis (heroku redis:info)",
        )
    if 300 <= status < 400:
        return Check(
            "probe",
            FAIL,
            f"{url} redirects ({status}): Scale does not follow redirects",
            "give the final URL, https://<app>.herokuapp.com/callback",
        )
    return Check(
        "probe", FAIL, f"{url} answered {status}", "point --url (and Scale's callback URL) at the app's /callback"
    )

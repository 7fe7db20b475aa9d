"""Deliveries: their identity, and accepting one onto the RQ queue exactly once.

Scale sends no delivery id, so identity is derived from content: a retry repeats the same
task id, status, completion time, response and audit trail; every event of the same task
(an error, each audit, a recall, the next completion) changes one of them and is a new
delivery.

Accepting is one Lua script, so one Redis round trip: remember the identity (SET NX with a
TTL) and, only if it was new, write the RQ job hash and push its id on the queue. Either
all of that happens or none does, so 50 concurrent copies make one job, and a Redis that
fails mid-request has marked nothing as seen.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import hiredis
import orjson
import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from callback_server import defaults, ledger, scripts, stats
from callback_server.auth import LIVE
from callback_server.config import Settings
from callback_server.connection import ConnectionStack
from callback_server.events import Event, derive_event
from callback_server.times import parse_instant, stamp

DISPATCH_FUNCTION = "workers.dispatch.process_delivery"
"""What a worker runs for each delivery, by dotted path so the web tier imports no handler code."""

CALLBACK = "callback"
RECONCILE = "reconcile"
REPLAY = "replay"
"""Where a delivery came from (its ``source``): Scale's POST, the reconciler, or a quarantine replay."""

PER_DELIVERY_FIELDS = ("created_at", "enqueued_at", "data", "description")
"""The job hash fields that differ per delivery; every other field is fixed per queue config."""


def _lua_string(value: object) -> str:
    """A Lua string literal for a fixed job field (decimal escapes: safe for any byte)."""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in raw) + '"'


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False)
"""The identity's JSON: json.dumps with these options, made once (json.dumps builds an encoder per
call). No cycle check: the material comes from parsed JSON, which cannot hold a cycle."""


def delivery_id(body: dict[str, Any], mode: str = LIVE) -> str:
    """The identity of a validated callback body: same content and key mode, same id; 32 hex characters.

    It reads only the task's state (never ``updated_at`` nor ``callback_completed``, which move
    without a new event), so a task from the list API has the identity of its callback. For a
    live task never audited it is exactly what it was before audits counted, so an upgrade in the
    middle of Scale's retries does not accept a delivery twice. A body that came with the test key
    but does not say ``is_test`` has an identity of its own, so the test key can never make a live
    task's delivery a duplicate; a test task's (``is_test: true``) is the same whichever key
    brought it, as the reconciler, which sees no key, computes it.
    """
    task = body["task"]
    material: list[Any] = [body["task_id"], task.get("status"), _instant(task.get("completed_at")), body["response"]]
    audit_state = _audit_state(task)
    if audit_state is not None:
        material.append(audit_state)
    if mode != LIVE and task.get("is_test") is not True:
        material.append({"mode": mode})
    canonical = _CANONICAL.encode(material)
    # surrogatepass: JSON may escape a lone surrogate inside a response; it hashes like any text.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _audit_state(task: dict[str, Any]) -> list[Any] | None:
    """The review status and the audit trail, in the fields that tell one audit from the next."""
    audits = [a for a in task.get("audits") or () if isinstance(a, dict)]
    review = task.get("customer_review_status")
    if not audits and review in (None, "pending"):
        return None
    trail = [
        [_instant(a.get("audited_at")), a.get("audit_result"), a.get("audit_source"), a.get("audited_by")]
        for a in audits
    ]
    return [review, trail]


def _instant(value: Any) -> Any:
    """A timestamp as one canonical UTC string, so the list API and the callback agree on it.

    One that names no instant (only outside ``completed_at``, which validation checks) is kept as sent.
    """
    moment = parse_instant(value)
    return value if moment is None else moment.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Delivery:
    """A validated callback on its way to the queue; what the job carries, as JSON."""

    delivery_id: str
    task_id: str
    task_type: str
    mode: str
    source: str
    received_at: str
    body: dict[str, Any] = field(repr=False)
    raw: str | None = field(default=None, repr=False, compare=False)
    event: Event = Event("completed")
    request_id: str | None = None
    """The router's X-Request-ID of the POST that brought it: the worker logs it with the delivery."""

    @classmethod
    def from_body(
        cls,
        body: dict[str, Any],
        *,
        mode: str,
        source: str = CALLBACK,
        raw: str | None = None,
        request_id: str | None = None,
        event: Event | None = None,
    ) -> Delivery:
        """Wrap a body that :func:`callback_server.schemas.load_callback` accepted (``raw``: its JSON text).

        ``event`` is the one validation derived, when the caller has it (the accept path does).
        """
        return cls(
            delivery_id=delivery_id(body, mode),
            task_id=body["task_id"],
            task_type=body["task"]["type"],
            mode=mode,
            source=source,
            received_at=stamp(),
            body=body,
            raw=raw,
            event=event if event is not None else derive_event(body["task"]),
            request_id=request_id,
        )

    def as_job_arg(self) -> dict[str, Any]:
        """The single JSON argument of the dispatch job."""
        return {**self._envelope(), "body": self.body}

    def _envelope(self) -> dict[str, Any]:
        envelope = {
            "delivery_id": self.delivery_id,
            "task_id": self.task_id,
            "type": self.task_type,
            "mode": self.mode,
            "source": self.source,
            "received_at": self.received_at,
            "event": self.event.name,
            "review_status": self.event.review_status,
        }
        if self.request_id is not None:
            envelope["request_id"] = self.request_id
        return envelope

    def job_data(self) -> bytes:
        """The job's ``data`` as RQ's JSON serializer writes it: ``[func, None, [arg], {}]``.

        The body is spliced in as the text Scale sent (it parsed as JSON, so it is valid
        JSON) rather than serialized a second time on the ack path.
        """
        body = self.raw if self.raw is not None else json.dumps(self.body)
        envelope = self._envelope()
        try:
            head = orjson.dumps(envelope).decode()
        except orjson.JSONEncodeError:  # a lone surrogate in an id: the standard library escapes it
            head = json.dumps(envelope)
        return f'["{DISPATCH_FUNCTION}", null, [{head[:-1]}, "body": {body}}}], {{}}]'.encode()


def describe(delivery: Delivery) -> str:
    """A job description that names ids and the event, never payload content."""
    event = delivery.event.name + (f" {delivery.event.review_status}" if delivery.event.review_status else "")
    return f"{delivery.task_type} {event} task {delivery.task_id} delivery {delivery.delivery_id} ({delivery.source})"


def rq_timestamp(moment: datetime) -> str:
    """A UTC time as RQ writes job timestamps (``rq.utils.utcformat``), at a third of strftime's cost."""
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@functools.lru_cache(maxsize=1024)
def _outcome_fields(task_type: str, event: str, mode: str) -> tuple[str, str]:
    """The counter fields of a queued and of a duplicate delivery with these labels (few, so cached)."""
    labels = (stats.type_label(task_type), event, mode)
    return stats.field("delivery", "queued", *labels), stats.field("delivery", "duplicate", *labels)


_TEMPLATE_DELIVERY = Delivery("0" * 32, "template", "template", LIVE, CALLBACK, "", {})


SEEN_PERIOD = 6 * 3600
"""Seconds of accepted identities one hash holds: a lookup checks DEDUP_TTL / 6 h + 1 hashes."""


def seen_period_key(period: int) -> str:
    """The hash of the identities accepted in one 6-hour period (fields: 16-byte identities)."""
    return f"{defaults.SEEN_PREFIX}:h{period}"


class DeliveryQueue:
    """Puts deliveries on the RQ queue, at most once per identity within the dedup TTL."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        queue_name: str = defaults.CALLBACK_QUEUE,
        dedup_ttl: int = defaults.DEDUP_TTL,
        job_timeout: int = defaults.HANDLER_TIMEOUT,
        retry_intervals: tuple[int, ...] = defaults.HANDLER_RETRY_INTERVALS,
        ledger_ttl: int = defaults.LEDGER_TTL,
        pool_size: int | None = None,
        redis_timeout: float = defaults.REDIS_TIMEOUT,
    ) -> None:
        self.connection = connection
        self._connections = ConnectionStack(connection.connection_pool, pool_size, redis_timeout)
        self.queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        self.dedup_ttl = dedup_ttl
        self.ledger_ttl = ledger_ttl
        # An identity lives in its period until the period's end plus DEDUP_TTL: check every such period.
        self._seen_periods = -(-dedup_ttl // SEEN_PERIOD) + 1
        self._period_keys: tuple[int, list[str]] = (-1, [])
        self.job_timeout = job_timeout
        self.retry = Retry(max=len(retry_intervals), interval=list(retry_intervals)) if retry_intervals else None
        template = self.build_job(_TEMPLATE_DELIVERY).to_dict()
        self._fixed = {
            name: value.value if isinstance(value, JobStatus) else value
            for name, value in template.items()
            if name not in PER_DELIVERY_FIELDS
        }
        # The fixed fields are part of the script's text, so each accept sends 9 arguments, not 40.
        fixed = "".join(f", {_lua_string(k)}, {_lua_string(v)}" for k, v in self._fixed.items())
        self._accept_script = scripts.ACCEPT % {
            "fixed": fixed,
            "minute_ttl": stats.MINUTE_TTL,
            "minute_prefix": stats.MINUTE_PREFIX,
            "probe_code": ledger.type_code(defaults.PROBE_TYPE),
        }
        self._accept_sha = hashlib.sha1(self._accept_script.encode()).hexdigest()

    @classmethod
    def from_settings(cls, settings: Settings, connection: redis.Redis) -> DeliveryQueue:
        """The accept path as configured: the web tier, replays and the reconciler all use this."""
        return cls(
            connection,
            queue_name=settings.callback_queue,
            dedup_ttl=settings.dedup_ttl,
            job_timeout=settings.handler_timeout,
            retry_intervals=settings.handler_retry_intervals,
            ledger_ttl=settings.ledger_ttl,
            pool_size=settings.redis_pool_size,
            redis_timeout=settings.redis_timeout,
        )

    def build_job(
        self,
        delivery: Delivery,
        *,
        argument: dict[str, Any] | None = None,
        job_id: str | None = None,
        description: str | None = None,
    ) -> Job:
        """The RQ job for a delivery, as ``Queue.enqueue`` would make it (not saved); the slow, exact path.

        A rerun's job carries another ``argument`` under its own ``job_id`` and ``description``.
        """
        job = Job.create(
            DISPATCH_FUNCTION,
            args=(argument if argument is not None else delivery.as_job_arg(),),
            connection=self.connection,
            serializer=JSONSerializer,
            id=job_id if job_id is not None else delivery.delivery_id,
            description=description if description is not None else describe(delivery),
            timeout=self.job_timeout,
            result_ttl=defaults.RESULT_TTL,
            failure_ttl=defaults.FAILURE_TTL,
            retry=self.retry,
            origin=self.queue.name,
            status=JobStatus.QUEUED,
        )
        job.enqueued_at = datetime.now(UTC)
        return job

    def _varying(self, delivery: Delivery) -> tuple[str, bytes, str]:
        """The job hash fields that differ per delivery. The fixed ones are exactly what RQ's own
        ``Job.to_dict`` wrote for a template job, so a change in RQ's format is followed, not guessed.
        ``data`` is left uncompressed (RQ reads both): zlib on every callback is CPU the ack path
        does not need to spend."""
        return rq_timestamp(datetime.now(UTC)), delivery.job_data(), describe(delivery)

    def accept(self, delivery: Delivery, tally: stats.Tally | None = None) -> bool:
        """Queue the delivery unless its identity was seen; True if queued, False if a duplicate.

        One round trip also writes the ledger's accept entry, counts the outcome, and delivers
        what ``tally`` owes. Raises redis errors as they come: the caller answers 503, nothing
        was marked as seen, and the tally still owes what it did.
        """
        now = time.time()
        periods = self._seen_period_keys(now)
        stream = int(now // ledger.PERIOD)
        identity = ledger.raw_id(delivery.delivery_id)
        queued_field, duplicate_field = _outcome_fields(delivery.task_type, delivery.event.name, delivery.mode)
        owed = tally.take() if tally is not None else ({}, {})
        stamp, data, description = self._varying(delivery)
        keys, args = scripts.accept_call(
            seen=periods,
            job=Job.key_for(delivery.delivery_id),
            queue=self.queue.key,
            queues=Queue.redis_queues_keys,
            stream=ledger.stream_key(stream),
            counters=stats.TOTAL_KEY,
            index=ledger.index_key(stream),
            identity=identity,
            job_id=delivery.delivery_id,
            stamp=stamp,
            data=data,
            description=description,
            seen_expiry=(int(now // SEEN_PERIOD) + 1) * SEEN_PERIOD + self.dedup_ttl,
            ledger_expiry=ledger.stream_expiry(stream, self.ledger_ttl),
            task_id=delivery.task_id,
            type_code=ledger.type_code(delivery.task_type),
            event_code=ledger.event_code(delivery.event),
            source_code=ledger.SOURCES.get(delivery.source, delivery.source),
            mode_code=ledger.MODES.get(delivery.mode, delivery.mode),
            queued_field=queued_field,
            duplicate_field=duplicate_field,
            minute=stats.minute_key(stats.current_minute(now)),
            tally=stats.as_args(*owed),
        )
        try:
            return bool(self._run_accept(keys, args))
        except redis.RedisError:
            if tally is not None:
                tally.give_back(*owed)
            raise

    def is_seen(self, delivery_id: str) -> bool:
        """Whether a delivery's identity was accepted within the dedup TTL (a read; accept decides)."""
        identity = ledger.raw_id(delivery_id)
        pipe = self.connection.pipeline(transaction=False)
        for key in self._seen_period_keys(time.time()):
            pipe.hexists(key, identity)
        return any(pipe.execute())

    def _seen_period_keys(self, now: float) -> list[str]:
        """The identity hashes an identity accepted within DEDUP_TTL of ``now`` may be in, newest first."""
        period = int(now // SEEN_PERIOD)
        cached_period, keys = self._period_keys
        if cached_period != period:  # once in six hours; every callback in between reuses the list
            keys = [seen_period_key(b) for b in range(period, period - self._seen_periods, -1)]
            self._period_keys = (period, keys)
        return keys

    def _run_accept(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """EVALSHA on a connection of the accept path's own, without redis-py's generic command machinery.

        Its blanket retry is wrong here: a timeout while *reading* the reply may mean the script
        ran, so only a failure to *send* is tried again. A connection goes back to the stack only
        after a complete exchange; on any failure it is disconnected first.
        """
        for attempt in (1, 2):
            conn = self._connections.get()
            try:
                try:
                    # hiredis packs it, as redis-py's serializer would after copying every argument.
                    conn.send_packed_command(
                        [hiredis.pack_command(("EVALSHA", self._accept_sha, len(keys), *keys, *args))]
                    )
                except (redis.ConnectionError, redis.TimeoutError):
                    if attempt == 2:
                        raise
                    continue
                try:
                    return conn.read_response()
                except redis.exceptions.NoScriptError:
                    # First use on this server (or after a restart without the script cache).
                    conn.send_command("EVAL", self._accept_script, len(keys), *keys, *args)
                    return conn.read_response()
            except redis.ResponseError:
                raise  # a whole reply was read (e.g. OOM under noeviction): the connection is clean
            except BaseException:
                conn.disconnect()
                raise
            finally:
                self._connections.put(conn)
        raise AssertionError("unreachable")

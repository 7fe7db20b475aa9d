"""The delivery ledger: what arrived, and what became of it, for ``LEDGER_TTL`` (3 days by default).

One Redis stream per 6 hours (``scb:ledger:<period>``), newest entries last, each expiring
``LEDGER_TTL`` after its last entry could have been written. Streams are the cheapest Redis
structure for this: an entry whose field names repeat the stream's first entry stores only its
values, so every entry uses the same six names, ``d t y e s m``, and short codes. Two kinds:

- the **accept** entry, written by the accept script in the same round trip as the job (so the
  ack path pays no extra round trip): ``d`` delivery id (16 raw bytes), ``t`` task id, ``y``
  type (a code from :data:`TYPE_CODES`, or ``=`` and the name), ``e`` event (a code from
  :data:`EVENT_CODES`), ``s`` source, ``m`` mode;
- one **outcome** entry per attempt a worker finished: ``t`` empty (that tells the kinds apart),
  ``y`` the outcome (``d`` done, ``r`` failed and retrying, ``f`` failed for good), ``e`` the
  attempt, ``s`` its duration in ms, ``m`` the handlers that ran (codes), and for a failure an
  extra ``x``: each failing handler's traceback (cut to :data:`TRACEBACK_LIMIT`).

The entry id is the time. Each stream has an index (``scb:ledger_ix:<period>``, a hash written in
the same script as each entry): ``d:`` and a delivery's 16 bytes give its entry ids, ``t:`` and a
task id its deliveries' 16 bytes, ``since`` the first entry indexed. A delivery's page reads the
indexes and then the entries by id, so its cost follows what it shows, not the traffic; a stream
written before indexes existed is scanned, as it was then. State that only RQ knows right now
(running, scheduled) is asked of RQ by the reader.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from callback_server import scripts
from callback_server.auth import LIVE, TEST
from callback_server.events import Event
from callback_server.schemas import COMMON_TYPES, REFERENCE_TYPES

PREFIX = "scb:ledger"
"""Key prefix of the daily ledger streams."""

HANDLER_NAMES_KEY = "scb:handler_names"
"""Hash of handler code -> dotted name, so an outcome entry names handlers in a few bytes."""

PERIOD = 6 * 3600
"""Seconds of entries one stream holds: it outlives its last entry by LEDGER_TTL, its first by 6 h more."""

TYPE_CODES = (
    *REFERENCE_TYPES,  # the 2016 seven, a frozen list
    *COMMON_TYPES,  # frozen too: new common types go at the end of this tuple, not there
    "polygonannotation",
    "lineannotation",
    "pointannotation",
    "cuboidannotation",
    "segmentannotation",
    "videoboxannotation",
    "videocuboidannotation",
    "lidarlinking",
    "lidarsegmentation",
    "lidartopdown",
    "sensorfusion",
    "documentmodel",
    "laneannotation",
)
"""Task types written as their index (append only: stored entries name types by position)."""

EVENT_CODES = {
    "completed": "c",
    "error": "e",
    "recalled": "r",
    "canceled": "x",
    "audit": "a",
    "audit:accepted": "aa",
    "audit:fixed": "af",
    "audit:rejected": "ar",
    "audit:commented": "ac",
}
"""Events (``audit:<review status>`` for audits) as the ledger writes them."""

_TYPE_INDEX = {name: str(index) for index, name in enumerate(TYPE_CODES)}
_EVENT_NAMES = {code: name for name, code in EVENT_CODES.items()}


def type_code(task_type: str) -> str:
    """A type as the ledger writes it: its index in :data:`TYPE_CODES`, else ``=`` and its name."""
    return _TYPE_INDEX.get(task_type) or f"={task_type}"


def event_code(event: Event) -> str:
    """An event as the ledger writes it: its code from :data:`EVENT_CODES` (an audit by its review status)."""
    name = f"{event.name}:{event.review_status}" if event.review_status else event.name
    return EVENT_CODES.get(name) or f"={name}"


def _type_name(code: str) -> str:
    if code.startswith("="):
        return code[1:]
    return TYPE_CODES[int(code)] if code.isdigit() and int(code) < len(TYPE_CODES) else code


def _event_name(code: str) -> str:
    return code[1:] if code.startswith("=") else _EVENT_NAMES.get(code, code)


SOURCES = {"callback": "c", "reconcile": "r", "replay": "p", "fetch": "f", "rerun": "u"}
"""How a delivery's source is written in an accept entry (one byte)."""

MODES = {LIVE: "l", TEST: "t"}

DONE, RETRYING, FAILED = "d", "r", "f"
"""Outcome entry kinds: done, failed with a retry scheduled, failed for good."""

TRACEBACK_LIMIT = 4000
"""Characters of a failing handler's traceback kept in the ledger."""

SCAN_BATCH = 2000
"""Entries one scan call reads: about a millisecond of Redis, so a search never stalls the ack path."""


def stream_key(period: int) -> str:
    """The stream of one 6-hour period (Unix time // PERIOD)."""
    return f"{PREFIX}:{period}"


INDEX_PREFIX = "scb:ledger_ix"
"""Key prefix of each stream's index: a hash that finds a delivery's entries, and a task's deliveries, by id."""


def index_key(period: int) -> str:
    """The index of one period's stream: ``d:<16 bytes>`` -> its entry ids, ``t:<task id>`` -> 16-byte delivery ids."""
    return f"{INDEX_PREFIX}:{period}"


def stream_expiry(period: int, ttl: int) -> int:
    """When a period's stream expires: LEDGER_TTL after the period ends."""
    return (period + 1) * PERIOD + ttl


def raw_id(delivery_id: str) -> bytes:
    """A delivery id (32 hex characters) as the 16 bytes the ledger stores."""
    return binascii.unhexlify(delivery_id)


def handler_code(name: str) -> str:
    """A short, stable code for a handler name (half its CRC32, in hex)."""
    return f"{binascii.crc32(name.encode()) & 0xFFFF:04x}"


@dataclass
class Attempt:
    """One finished attempt of a delivery's handlers."""

    number: int
    outcome: str
    finished_at: datetime
    duration_ms: float
    handlers: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


@dataclass
class Arrival:
    """One time a delivery was put on the queue (its first acceptance, a re-acceptance, a rerun), and
    the attempts that followed it."""

    received_at: datetime
    source: str
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class Entry:
    """A delivery as the ledger knows it: where it came from and each attempt's outcome."""

    delivery_id: str
    task_id: str
    type: str
    event: str
    source: str
    mode: str
    received_at: datetime
    attempts: list[Attempt] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    """Every time it was queued, oldest first, each with its attempts (filled by :meth:`Ledger.delivery`):
    a delivery accepted again or rerun keeps its earlier history."""

    @property
    def state(self) -> str:
        """``queued`` until a worker reports, then the last attempt's outcome (the reader may refine it)."""
        if not self.attempts or (len(self.arrivals) > 1 and not self.arrivals[-1].attempts):
            return "queued"  # never tried, or queued again (a rerun) and not tried since
        return {DONE: "done", RETRYING: "retrying", FAILED: "failed"}[self.attempts[-1].outcome]


def _moment(entry_id: bytes) -> datetime:
    return datetime.fromtimestamp(int(entry_id.split(b"-")[0]) / 1000, UTC)


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value is not None else ""


_SOURCE_NAMES = {code: name for name, code in SOURCES.items()}
_MODE_NAMES = {code: name for name, code in MODES.items()}


def _is_outcome(fields: dict[bytes, bytes]) -> bool:
    return not fields.get(b"t")


def _accepted(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(
        delivery_id=fields[b"d"].hex(),
        task_id=_text(fields.get(b"t")),
        type=_type_name(_text(fields.get(b"y"))),
        event=_event_name(_text(fields.get(b"e"))),
        source=_SOURCE_NAMES.get(_text(fields.get(b"s")), _text(fields.get(b"s"))),
        mode=_MODE_NAMES.get(_text(fields.get(b"m")), _text(fields.get(b"m"))),
        received_at=_moment(entry_id),
    )


def _attempt(entry_id: bytes, fields: dict[bytes, bytes], names: dict[str, str]) -> Attempt:
    failures = json.loads(fields[b"x"]) if b"x" in fields else {}
    codes = [code for code in _text(fields.get(b"m")).split(",") if code]
    return Attempt(
        number=int(fields.get(b"e") or b"1"),
        outcome=_text(fields.get(b"y")),
        finished_at=_moment(entry_id),
        duration_ms=float(fields.get(b"s") or b"0"),
        handlers=[names.get(code, code) for code in codes],
        failures=failures,
    )


class Ledger:
    """Reads the ledger back (the accept script and the workers write it)."""

    def __init__(self, connection: redis.Redis, ttl: int) -> None:
        self.connection = connection
        self.ttl = ttl
        self._scan = connection.register_script(scripts.LEDGER_SCAN)

    def _periods(self, now: float | None = None) -> list[int]:
        """The periods whose streams may still exist, newest first."""
        current = int((datetime.now(UTC).timestamp() if now is None else now) // PERIOD)
        return list(range(current, current - self.ttl // PERIOD - 2, -1))

    def _entries(self) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
        """Every entry, newest first (each day's stream read in pages)."""
        for period in self._periods():
            start = b"+"
            while True:
                page = self.connection.xrevrange(stream_key(period), start, "-", count=SCAN_BATCH)
                yield from page
                if len(page) < SCAN_BATCH:
                    break
                start = b"(" + page[-1][0]

    def _matching(
        self, name: bytes, value: bytes, before: dict[int, bytes | None] | None = None
    ) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
        """Entries whose field ``name`` equals ``value``, newest first, filtered inside Redis.

        With ``before``, only the periods it names are read, each from just below the given id
        down (the entries written before its index began; None for the whole stream).
        """
        for period in self._periods() if before is None else list(before):
            bound = None if before is None else before[period]
            start: bytes | str = "+" if bound is None else b"(" + bound
            while start:
                keys, args = scripts.ledger_scan_call(
                    stream=stream_key(period), start=start, count=SCAN_BATCH, name=name, value=value
                )
                nxt, found = self._scan(keys=keys, args=args)
                for entry_id, flat in found:
                    yield entry_id, dict(zip(flat[::2], flat[1::2], strict=True))
                start = nxt

    def _indexed(self, field: bytes) -> tuple[list[tuple[int, bytes]], dict[int, bytes | None]]:
        """What each period's index holds under ``field`` (newest period first), and where an index
        cannot answer alone: a period with no index (written before indexes existed) wholly, one
        whose index began after its first entry below that point (:meth:`_matching`'s ``before``).
        """
        periods = self._periods()
        with self.connection.pipeline(transaction=False) as pipe:
            for period in periods:
                pipe.hmget(index_key(period), field, "since")
                pipe.xrange(stream_key(period), "-", "+", count=1)
            replies = pipe.execute()
        found: list[tuple[int, bytes]] = []
        legacy: dict[int, bytes | None] = {}
        for period, (value, since), first in zip(periods, replies[::2], replies[1::2], strict=True):
            if not first:
                continue  # no stream (yet, or any more)
            if value:
                found.append((period, value))
            if since is None:
                legacy[period] = None
            elif first[0][0] != since:
                legacy[period] = since
        return found, legacy

    def _entries_by_id(self, wanted: list[tuple[int, bytes]]) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """The entries of the given (period, entry id) pairs, as read by id: one pipeline."""
        with self.connection.pipeline(transaction=False) as pipe:
            for period, entry_id in wanted:
                pipe.xrange(stream_key(period), entry_id, entry_id)
            return [entry for reply in pipe.execute() for entry in reply]

    def handler_names(self) -> dict[str, str]:
        """Handler codes to dotted names, as the workers registered them."""
        return {k.decode(): v.decode() for k, v in self.connection.hgetall(HANDLER_NAMES_KEY).items()}

    def recent(self, limit: int = 50, *, scan: int = 20_000, **filters: str) -> list[Entry]:
        """The newest deliveries (at most ``limit``) matching ``filters`` (type, event, source, mode, state).

        Reads at most ``scan`` entries, newest first, so a page costs a bounded amount of Redis.
        """
        names = self.handler_names()
        outcomes: dict[bytes, list[Attempt]] = {}
        found: list[Entry] = []
        for read, (entry_id, fields) in enumerate(self._entries()):
            if read >= scan or len(found) >= limit:
                break
            if _is_outcome(fields):
                outcomes.setdefault(fields[b"d"], []).insert(0, _attempt(entry_id, fields, names))
                continue
            entry = _accepted(entry_id, fields)
            entry.attempts = outcomes.pop(fields[b"d"], [])
            if all(_matches(entry, key, wanted) for key, wanted in filters.items() if wanted):
                found.append(entry)
        return found

    def deliveries_of_task(self, task_id: str) -> list[Entry]:
        """Every delivery of a task still in the ledger, newest first (accept entries only).

        Read through the streams' indexes: the cost follows the task's deliveries, not the traffic.
        """
        if not task_id:
            return []
        found, legacy = self._indexed(b"t:" + task_id.encode())
        pairs = [(period, raw[i : i + 16]) for period, raw in found for i in range(0, len(raw), 16)]
        with self.connection.pipeline(transaction=False) as pipe:
            for period, delivery in pairs:
                pipe.hget(index_key(period), b"d:" + delivery)
            ids = pipe.execute()
        accepts = [(period, value.split(b",")[0]) for (period, _), value in zip(pairs, ids, strict=True) if value]
        entries = [_accepted(i, f) for i, f in self._entries_by_id(accepts)]
        if legacy:
            entries += [_accepted(i, f) for i, f in self._matching(b"t", task_id.encode(), legacy)]
        # A delivery accepted again or rerun in a later period is listed there too: shown once, as first accepted.
        first: dict[str, Entry] = {}
        for entry in sorted(entries, key=lambda e: e.received_at):
            first.setdefault(entry.delivery_id, entry)
        return sorted(first.values(), key=lambda e: e.received_at, reverse=True)

    def delivery(self, delivery_id: str, *, handler_names: bool = True) -> Entry | None:
        """One delivery with all its attempts, oldest first; None when the ledger no longer has it.

        Accepted again (after DEDUP_TTL) or rerun, it keeps its first acceptance and every attempt
        since: each later arrival is appended to ``arrivals``, never replacing the history.

        Read through the streams' indexes: a handful of commands, however busy the ledger.
        """
        try:
            wanted = raw_id(delivery_id)
        except (binascii.Error, ValueError):
            return None
        found, legacy = self._indexed(b"d:" + wanted)
        pairs = [(period, entry_id) for period, ids in found for entry_id in ids.split(b",")]
        entries = self._entries_by_id(pairs)
        if legacy:
            entries += list(self._matching(b"d", wanted, legacy))
        # Without handler_names, attempts name their handlers by code (failures are always by name).
        names = self.handler_names() if handler_names else {}
        attempts: list[Attempt] = []
        accepted: Entry | None = None
        for entry_id, fields in sorted(entries, key=lambda pair: _order(pair[0])):
            if _is_outcome(fields):
                attempt = _attempt(entry_id, fields, names)
                attempts.append(attempt)
                if accepted is not None:
                    accepted.arrivals[-1].attempts.append(attempt)
                continue
            arrival = _accepted(entry_id, fields)
            if accepted is None:
                accepted = arrival
            # Accepted again (after DEDUP_TTL) or rerun: appended; the first acceptance stays the entry's.
            accepted.arrivals.append(Arrival(arrival.received_at, arrival.source))
        if accepted is not None:
            accepted.attempts = attempts
        return accepted


def _order(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def _matches(entry: Entry, key: str, wanted: str) -> bool:
    value = getattr(entry, key, None)
    if key == "event":
        return entry.event == wanted or entry.event.split(":")[0] == wanted
    return value == wanted


def outcome_fields(
    delivery_id: str, kind: str, attempt: int, duration_ms: float, handlers: list[str], failures: dict[str, str]
) -> dict[str, Any]:
    """The fields of an outcome entry (what a worker appends after an attempt): the accept entry's names."""
    fields: dict[str, Any] = {
        "d": raw_id(delivery_id),
        "t": "",
        "y": kind,
        "e": attempt,
        "s": round(duration_ms),
        "m": ",".join(handler_code(name) for name in handlers),
    }
    if failures:
        fields["x"] = json.dumps({name: text[-TRACEBACK_LIMIT:] for name, text in failures.items()})
    return fields


def record_outcome(
    pipe: Any,
    ttl: int,
    delivery_id: str,
    kind: str,
    attempt: int,
    duration_ms: float,
    handlers: list[str],
    failures: dict[str, str] | None = None,
    now: float | None = None,
) -> None:
    """Queue an outcome entry on a pipeline (its stream expires ``ttl`` after its period ends)."""
    moment = datetime.now(UTC).timestamp() if now is None else now
    period = int(moment // PERIOD)
    fields = outcome_fields(delivery_id, kind, attempt, duration_ms, handlers, failures or {})
    flat = [part for item in fields.items() for part in item]
    keys, args = scripts.ledger_outcome_call(
        stream=stream_key(period),
        index=index_key(period),
        expire_at=stream_expiry(period, ttl),
        delivery=raw_id(delivery_id),
        fields=flat,
    )
    pipe.eval(scripts.LEDGER_OUTCOME, len(keys), *keys, *args)


def register_handlers(connection: redis.Redis, names: list[str]) -> None:
    """Let readers turn handler codes back into names (a worker calls this at start)."""
    if names:
        connection.hset(HANDLER_NAMES_KEY, mapping={handler_code(name): name for name in names})

"""The delivery ledger: what arrived, and what became of it, for ``LEDGER_TTL`` (3 days by default).

One Redis stream per UTC day (``scb:ledger:<unix day>``), newest entries last. Streams are the
cheapest Redis structure for this: an entry whose fields repeat the day's first entry stores
only its values. Two kinds of entry:

- the **accept** entry, written by the accept script in the same round trip as the job (so the
  ack path pays no extra round trip): delivery id (16 raw bytes), task id, type, event, source,
  mode;
- one **outcome** entry per attempt a worker finished (``k``): ``d`` done, ``r`` failed and
  retrying, ``f`` failed for good, with the attempt, its duration and, for a failure, each
  failing handler's traceback (cut to :data:`TRACEBACK_LIMIT`).

The entry id is the time. A delivery's page is read back by scanning the streams; state that
only RQ knows right now (running, scheduled) is asked of RQ by the reader.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

PREFIX = "scb:ledger"
"""Key prefix of the daily ledger streams."""

HANDLER_NAMES_KEY = "scb:handler_names"
"""Hash of handler code -> dotted name, so an outcome entry names handlers in a few bytes."""

DAY = 86400

SOURCES = {"callback": "c", "reconcile": "r", "replay": "p", "fetch": "f"}
"""How a delivery's source is written in an accept entry (one byte)."""

MODES = {"live": "l", "test": "t"}

DONE, RETRYING, FAILED = "d", "r", "f"
"""Outcome entry kinds: done, failed with a retry scheduled, failed for good."""

TRACEBACK_LIMIT = 4000
"""Characters of a failing handler's traceback kept in the ledger."""

SCAN_BATCH = 2000
"""Entries one scan call reads: about a millisecond of Redis, so a search never stalls the ack path."""

_SCAN = """
-- KEYS[1]: a ledger stream.  ARGV: start id (inclusive, '+' for the newest), count, field, value.
-- Reads up to count entries newest first; returns the next start id ('' at the end) and the
-- entries whose field equals value, so a search costs Redis a millisecond per call.
local entries = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', ARGV[2])
local found = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == ARGV[3] then
      if fields[i + 1] == ARGV[4] then found[#found + 1] = entry end
      break
    end
  end
end
local nxt = ''
if #entries == tonumber(ARGV[2]) then
  local last = entries[#entries][1]
  local ms, seq = string.match(last, '(%d+)-(%d+)')
  if tonumber(seq) > 0 then nxt = ms .. '-' .. (tonumber(seq) - 1)
  elseif tonumber(ms) > 0 then nxt = (tonumber(ms) - 1) .. '-18446744073709551615' end
end
return {nxt, found}
"""


def day_key(day: int) -> str:
    """The stream of one Unix day."""
    return f"{PREFIX}:{day}"


def raw_id(delivery_id: str) -> bytes:
    """A delivery id (32 hex characters) as the 16 bytes the ledger stores."""
    return binascii.unhexlify(delivery_id)


def handler_code(name: str) -> str:
    """A short, stable code for a handler name (its CRC32 in hex)."""
    return f"{binascii.crc32(name.encode()):08x}"


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

    @property
    def state(self) -> str:
        """``queued`` until a worker reports, then the last attempt's outcome (the reader may refine it)."""
        if not self.attempts:
            return "queued"
        return {DONE: "done", RETRYING: "retrying", FAILED: "failed"}[self.attempts[-1].outcome]


def _moment(entry_id: bytes) -> datetime:
    return datetime.fromtimestamp(int(entry_id.split(b"-")[0]) / 1000, UTC)


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value is not None else ""


_SOURCE_NAMES = {code: name for name, code in SOURCES.items()}
_MODE_NAMES = {code: name for name, code in MODES.items()}


def _accepted(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(
        delivery_id=fields[b"d"].hex(),
        task_id=_text(fields.get(b"t")),
        type=_text(fields.get(b"y")),
        event=_text(fields.get(b"e")),
        source=_SOURCE_NAMES.get(_text(fields.get(b"s")), _text(fields.get(b"s"))),
        mode=_MODE_NAMES.get(_text(fields.get(b"m")), _text(fields.get(b"m"))),
        received_at=_moment(entry_id),
    )


def _attempt(entry_id: bytes, fields: dict[bytes, bytes], names: dict[str, str]) -> Attempt:
    failures = json.loads(fields[b"x"]) if b"x" in fields else {}
    codes = [code for code in _text(fields.get(b"h")).split(",") if code]
    return Attempt(
        number=int(fields.get(b"a", b"1")),
        outcome=_text(fields.get(b"k")),
        finished_at=_moment(entry_id),
        duration_ms=float(fields.get(b"ms", b"0")),
        handlers=[names.get(code, code) for code in codes],
        failures=failures,
    )


class Ledger:
    """Reads the ledger back (the accept script and the workers write it)."""

    def __init__(self, connection: redis.Redis, ttl: int) -> None:
        self.connection = connection
        self.ttl = ttl
        self._scan = connection.register_script(_SCAN)

    def _days(self, now: float | None = None) -> list[int]:
        """The days whose streams may still exist, newest first."""
        today = int((datetime.now(UTC).timestamp() if now is None else now) // DAY)
        return list(range(today, today - self.ttl // DAY - 2, -1))

    def _entries(self, limit: int | None = None) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
        """Every entry, newest first (each day's stream read in pages)."""
        for day in self._days():
            start = b"+"
            while True:
                page = self.connection.xrevrange(day_key(day), start, "-", count=SCAN_BATCH)
                yield from page
                if len(page) < SCAN_BATCH:
                    break
                start = b"(" + page[-1][0]

    def _matching(self, name: bytes, value: bytes) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
        """Entries whose field ``name`` equals ``value``, newest first, filtered inside Redis."""
        for day in self._days():
            start: bytes | str = "+"
            while start:
                nxt, found = self._scan(keys=[day_key(day)], args=[start, SCAN_BATCH, name, value])
                for entry_id, flat in found:
                    yield entry_id, dict(zip(flat[::2], flat[1::2], strict=True))
                start = nxt

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
            if b"k" in fields:
                outcomes.setdefault(fields[b"d"], []).insert(0, _attempt(entry_id, fields, names))
                continue
            entry = _accepted(entry_id, fields)
            entry.attempts = outcomes.pop(fields[b"d"], [])
            if all(_matches(entry, key, wanted) for key, wanted in filters.items() if wanted):
                found.append(entry)
        return found

    def deliveries_of_task(self, task_id: str) -> list[Entry]:
        """Every delivery of a task still in the ledger, newest first (accept entries only)."""
        return [_accepted(i, f) for i, f in self._matching(b"t", task_id.encode())]

    def delivery(self, delivery_id: str) -> Entry | None:
        """One delivery with all its attempts, oldest first; None when the ledger no longer has it."""
        try:
            wanted = raw_id(delivery_id)
        except (binascii.Error, ValueError):
            return None
        names = self.handler_names()
        attempts: list[Attempt] = []
        for entry_id, fields in self._matching(b"d", wanted):
            if b"k" in fields:
                attempts.insert(0, _attempt(entry_id, fields, names))
            else:
                entry = _accepted(entry_id, fields)
                entry.attempts = attempts
                return entry
        return None


def _matches(entry: Entry, key: str, wanted: str) -> bool:
    value = getattr(entry, key, None)
    if key == "event":
        return entry.event == wanted or entry.event.split(":")[0] == wanted
    return value == wanted


def outcome_fields(
    delivery_id: str, kind: str, attempt: int, duration_ms: float, handlers: list[str], failures: dict[str, str]
) -> dict[str, Any]:
    """The fields of an outcome entry (what a worker appends after an attempt)."""
    fields: dict[str, Any] = {
        "d": raw_id(delivery_id),
        "k": kind,
        "a": attempt,
        "ms": round(duration_ms, 1),
        "h": ",".join(handler_code(name) for name in handlers),
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
    """Queue an outcome entry on a pipeline (its day's stream expires ``ttl`` after the day ends)."""
    moment = datetime.now(UTC).timestamp() if now is None else now
    day = int(moment // DAY)
    key = day_key(day)
    pipe.xadd(key, outcome_fields(delivery_id, kind, attempt, duration_ms, handlers, failures or {}))
    pipe.expireat(key, (day + 1) * DAY + ttl)


def register_handlers(connection: redis.Redis, names: list[str]) -> None:
    """Let readers turn handler codes back into names (a worker calls this at start)."""
    if names:
        connection.hset(HANDLER_NAMES_KEY, mapping={handler_code(name): name for name in names})

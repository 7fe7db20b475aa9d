"""Every Lua script the receiver and workers run, in one place (as rq keeps its own in ``rq/scripts.py``).

Each script's calling convention lives beside its text: a ``*_call`` function takes every key
and argument by name and packs them in the script's order, and the Lua reads them into locals of
the same names first thing, so a position is written in exactly two adjacent places.

Each is sent once and then called by its SHA (redis-py's ``register_script``), except the accept
script, which the ack path drives by hand (:meth:`callback_server.deliveries.DeliveryQueue._run_accept`)
because it cannot afford redis-py's generic retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Call = tuple[tuple[str, ...], tuple[Any, ...]]
"""A script call's KEYS and ARGV, as each script's ``*_call`` function packs them by name."""

APPLY_TALLY = """
-- Applies a tally (see callback_server.stats.as_args) starting at ARGV[i]; returns the next index.
local function apply_tally(total_key, minute_prefix, minute_ttl, i)
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('HINCRBYFLOAT', total_key, ARGV[i], ARGV[i + 1]); i = i + 2
  end
  local minutes = tonumber(ARGV[i]); i = i + 1
  for _ = 1, minutes do
    local key = minute_prefix .. ':' .. ARGV[i]
    local count = tonumber(ARGV[i + 1]); i = i + 2
    for _ = 1, count do
      redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1]); i = i + 2
    end
    redis.call('EXPIRE', key, minute_ttl)
  end
  return i
end
"""
"""The Lua function that scripts embed to apply a tally in the same round trip as their own work."""

INDEX_ENTRY = """
-- Notes a ledger entry in its stream's index (callback_server.ledger): under 'd:' and the delivery's
-- 16 bytes, the entry ids of that delivery, comma-separated; 'since' is the first entry indexed.
local function index_entry(index_key, delivery, entry, expire_at)
  local field = 'd:' .. delivery
  local ids = redis.call('HGET', index_key, field)
  redis.call('HSET', index_key, field, ids and (ids .. ',' .. entry) or entry)
  redis.call('HSETNX', index_key, 'since', entry)
  redis.call('EXPIREAT', index_key, expire_at)
end
"""
"""The Lua function that writes a ledger entry's index fields, for the scripts that add entries."""

ACCEPT = (
    APPLY_TALLY
    + INDEX_ENTRY
    + """
-- Arguments: see accept_call() below, which packs them; the names here are its names.
local n = tonumber(ARGV[1])
local identity, job_id, stamp, data, description = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local seen_expiry, ledger_expiry = ARGV[7], ARGV[8]
local task_id, type_code, event_code, source_code, mode_code = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local queued_field, duplicate_field, minute = ARGV[14], ARGV[15], ARGV[16]
local job, queue, queues, stream, counters, index = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4], KEYS[n + 5],
  KEYS[n + 6]
-- The job's fixed fields are written into the script's text below.
local new = 1
for i = 1, n do
  if redis.call('HEXISTS', KEYS[i], identity) == 1 then new = 0; break end
end
if new == 1 then
  redis.call('HSET', KEYS[1], identity, '')
  redis.call('EXPIREAT', KEYS[1], seen_expiry)
  redis.call('HSET', job, 'created_at', stamp, 'enqueued_at', stamp, 'data', data,
             'description', description%(fixed)s)
  redis.call('RPUSH', queue, job_id)
  redis.call('SADD', queues, queue)
  local entry = redis.call('XADD', stream, '*', 'd', identity, 't', task_id, 'y', type_code, 'e', event_code,
                          's', source_code, 'm', mode_code)
  -- doctor's probe: its entry's id, so that the worker removes it in O(1) (PROBE_CLEANUP)
  if type_code == '%(probe_code)s' then redis.call('HSET', job, 'scb_ledger_id', entry) end
  index_entry(index, identity, entry, ledger_expiry)
  local task_field = 't:' .. task_id
  redis.call('HSET', index, task_field, (redis.call('HGET', index, task_field) or '') .. identity)
  redis.call('EXPIREAT', stream, ledger_expiry)
  redis.call('HINCRBYFLOAT', counters, queued_field, 1)
  redis.call('HINCRBYFLOAT', minute, 'out|queued', 1)
else
  redis.call('HINCRBYFLOAT', counters, duplicate_field, 1)
  redis.call('HINCRBYFLOAT', minute, 'out|duplicate', 1)
end
redis.call('EXPIRE', minute, %(minute_ttl)d)
apply_tally(counters, '%(minute_prefix)s', %(minute_ttl)d, 17)
return new
"""
)
"""Accept a delivery or call it a duplicate, write its job and ledger entry, count it (a template:
``%(fixed)s`` is the job's fixed fields, filled in per queue configuration). Returns 1 if queued."""


def accept_call(
    *,
    seen: Sequence[str],
    job: str,
    queue: str,
    queues: str,
    stream: str,
    counters: str,
    index: str,
    identity: bytes,
    job_id: str,
    stamp: str,
    data: bytes,
    description: str,
    seen_expiry: int,
    ledger_expiry: int,
    task_id: str,
    type_code: str,
    event_code: str,
    source_code: str,
    mode_code: str,
    queued_field: str,
    duplicate_field: str,
    minute: str,
    tally: Sequence[Any],
) -> Call:
    """The KEYS and ARGV of :data:`ACCEPT`, each in its place (``seen``: the identity periods, newest first).

    ``tally`` is what :func:`callback_server.stats.as_args` packs; it starts at ARGV[17].
    """
    keys = (*seen, job, queue, queues, stream, counters, index)
    args = (
        len(seen),
        identity,
        job_id,
        stamp,
        data,
        description,
        seen_expiry,
        ledger_expiry,
        task_id,
        type_code,
        event_code,
        source_code,
        mode_code,
        queued_field,
        duplicate_field,
        minute,
        *tally,
    )
    return keys, args


LEDGER_SCAN = """
-- Arguments: see ledger_scan_call() below.
-- Reads up to count entries newest first; returns the next start id ('' at the end) and the
-- entries whose field equals value, so a search costs Redis a millisecond per call.
local stream = KEYS[1]
local start, count, name, value = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local entries = redis.call('XREVRANGE', stream, start, '-', 'COUNT', count)
local found = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then
      if fields[i + 1] == value then found[#found + 1] = entry end
      break
    end
  end
end
local nxt = ''
if #entries == count then
  local last = entries[#entries][1]
  local ms, seq = string.match(last, '(%d+)-(%d+)')
  if tonumber(seq) > 0 then nxt = ms .. '-' .. (tonumber(seq) - 1)
  elseif tonumber(ms) > 0 then nxt = (tonumber(ms) - 1) .. '-18446744073709551615' end
end
return {nxt, found}
"""
"""One page of a ledger stream, newest first, filtered inside Redis (a search costs it ~1 ms a call)."""


def ledger_scan_call(*, stream: str, start: str | bytes, count: int, name: str | bytes, value: str | bytes) -> Call:
    """The KEYS and ARGV of :data:`LEDGER_SCAN`: from ``start`` (an entry id, ``+`` for the newest), up to
    ``count`` entries, those whose field ``name`` equals ``value``."""
    return (stream,), (start, count, name, value)


LEDGER_OUTCOME = (
    INDEX_ENTRY
    + """
-- Arguments: see ledger_outcome_call() below; the entry's field names and values come last.
local stream, index = KEYS[1], KEYS[2]
local expire_at, delivery = ARGV[1], ARGV[2]
local entry = redis.call('XADD', stream, '*', unpack(ARGV, 3))
redis.call('EXPIREAT', stream, expire_at)
index_entry(index, delivery, entry, expire_at)
return entry
"""
)
"""A worker's outcome entry, and its place in the stream's index, in one call."""


def ledger_outcome_call(
    *, stream: str, index: str, expire_at: int, delivery: bytes, fields: Sequence[str | bytes]
) -> Call:
    """The KEYS and ARGV of :data:`LEDGER_OUTCOME` (``fields``: the entry's names and values, flat)."""
    return (stream, index), (expire_at, delivery, *fields)


PROBE_CLEANUP = """
-- Arguments: see probe_cleanup_call() below.
-- O(1): the accept script noted the probe's ledger entry id in its job (scb_ledger_id).
local n = tonumber(ARGV[1])
local identity, counter_field, notice_ttl, task_id = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local counters, notice, job = KEYS[n + 3], KEYS[n + 4], KEYS[n + 5]
for i = 1, n do redis.call('HDEL', KEYS[i], identity) end
local entry = redis.call('HGET', job, 'scb_ledger_id')
for i = n + 1, n + 2 do  -- the two streams; each one's index is five keys further on
  if entry then redis.call('XDEL', KEYS[i], entry) end
  redis.call('HDEL', KEYS[i + 5], 'd:' .. identity, 't:' .. task_id)
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('XLEN', KEYS[i]) == 0 then
    redis.call('DEL', KEYS[i], KEYS[i + 5])
  end
end
redis.call('HDEL', counters, counter_field)
if notice ~= '' then
  redis.call('RPUSH', notice, 'processed')
  redis.call('EXPIRE', notice, notice_ttl)
end
return 1
"""
"""Remove every trace of a processed doctor probe and tell doctor it was processed."""


def probe_cleanup_call(
    *,
    seen: Sequence[str],
    streams: tuple[str, str],
    counters: str,
    notice: str,
    job: str,
    indexes: tuple[str, str],
    identity: bytes,
    counter_field: str,
    notice_ttl: int,
    task_id: str,
) -> Call:
    """The KEYS and ARGV of :data:`PROBE_CLEANUP`: the seen periods around the acceptance, the ledger
    streams of its period and the next with their indexes, and ``notice`` ('' when there is none)."""
    keys = (*seen, *streams, counters, notice, job, *indexes)
    return keys, (len(seen), identity, counter_field, notice_ttl, task_id)


RESCUE = """
-- Arguments: see rescue_call() below (a job of another queue than the one named is left alone).
-- A job that exists, has not finished, and is in none of these is orphaned. The first sweep that
-- sees it so only marks the time (a move between two of RQ's own commands is never seen here: each
-- of those is atomic, and so is this script); a later sweep, past the grace, queues it again.
-- Returns 1 when it queued the job, 0 otherwise.
local job, queue, intermediate, started = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, now, grace, queue_name = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local status = redis.call('HGET', job, 'status')
if not status or status == 'finished' then return 0 end
if redis.call('HGET', job, 'origin') ~= queue_name then return 0 end
local function placed()
  if redis.call('LPOS', queue, id) or redis.call('LPOS', intermediate, id) then return true end
  for i = 5, 7 do  -- the scheduled, failed and deferred registries
    if redis.call('ZSCORE', KEYS[i], id) then return true end
  end
  local prefix = id .. ':'  -- the started registry holds job_id:execution_id
  for _, member in ipairs(redis.call('ZRANGE', started, 0, -1)) do
    if member == id or string.sub(member, 1, #prefix) == prefix then return true end
  end
  return false
end
if placed() then
  redis.call('HDEL', job, 'scb_orphan_seen')  -- a mark from an earlier sweep no longer holds
  return 0
end
local seen = tonumber(redis.call('HGET', job, 'scb_orphan_seen'))
if not seen then
  redis.call('HSET', job, 'scb_orphan_seen', ARGV[2])
  return 0
end
if now - seen < grace then return 0 end
redis.call('HDEL', job, 'scb_orphan_seen')
redis.call('HSET', job, 'status', 'queued')
redis.call('RPUSH', queue, id)
return 1
"""
"""Queues again a job that RQ's bookkeeping left in no list or registry (see :mod:`workers.rescue`)."""


def rescue_call(
    *,
    job: str,
    queue: str,
    intermediate: str,
    registries: tuple[str, str, str, str],
    job_id: str,
    now: float,
    grace: float,
    queue_name: str,
) -> Call:
    """The KEYS and ARGV of :data:`RESCUE` (``registries``: started, scheduled, failed, deferred)."""
    return (job, queue, intermediate, *registries), (job_id, now, grace, queue_name)


RERUN_ENQUEUE = (
    INDEX_ENTRY
    + """
-- Arguments: see rerun_enqueue_call() below; the job hash's field names and values come last.
-- Marks first: a task this run already queued (before a Ctrl-C, a kill, a resume) is never queued
-- again. The delivery's identity (scb:seen) is not touched: a rerun is not a delivery.
local marks, job, queue, queues, stream, index, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
  KEYS[6], KEYS[7]
local task_id, job_id, identity, delivery_id, ledger_expiry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local type_code, event_code, source_code, mode_code = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local counter_field, marks_ttl = ARGV[10], ARGV[11]
if redis.call('HSETNX', marks, task_id, delivery_id) == 0 then return 0 end
redis.call('EXPIRE', marks, marks_ttl)
redis.call('HSET', job, unpack(ARGV, 12))
redis.call('RPUSH', queue, job_id)
redis.call('SADD', queues, queue)
local entry = redis.call('XADD', stream, '*', 'd', identity, 't', task_id, 'y', type_code, 'e', event_code,
                        's', source_code, 'm', mode_code)
redis.call('EXPIREAT', stream, ledger_expiry)
index_entry(index, identity, entry, ledger_expiry)
-- The task's deliveries: this one is added only if the period's index does not list it yet.
local task_field = 't:' .. task_id
local listed = redis.call('HGET', index, task_field) or ''
local known = false
for i = 1, #listed, 16 do
  if string.sub(listed, i, i + 15) == identity then known = true; break end
end
if not known then redis.call('HSET', index, task_field, listed .. identity) end
redis.call('HINCRBYFLOAT', counters, counter_field, 1)
return 1
"""
)
"""Queue one rerun job unless the run queued its task already, with its ledger entry, in one call."""


def rerun_enqueue_call(
    *,
    marks: str,
    job: str,
    queue: str,
    queues: str,
    stream: str,
    index: str,
    counters: str,
    task_id: str,
    job_id: str,
    identity: bytes,
    delivery_id: str,
    ledger_expiry: int,
    type_code: str,
    event_code: str,
    source_code: str,
    mode_code: str,
    counter_field: str,
    marks_ttl: int,
    job_fields: Sequence[Any],
) -> Call:
    """The KEYS and ARGV of :data:`RERUN_ENQUEUE` (``job_fields``: the job hash's names and values, flat)."""
    keys = (marks, job, queue, queues, stream, index, counters)
    args = (
        task_id,
        job_id,
        identity,
        delivery_id,
        ledger_expiry,
        type_code,
        event_code,
        source_code,
        mode_code,
        counter_field,
        marks_ttl,
        *job_fields,
    )
    return keys, args

"""Every Lua script the receiver and workers run, in one place (as rq keeps its own in ``rq/scripts.py``).

Each is sent once and then called by its SHA (redis-py's ``register_script``), except the accept
script, which the ack path drives by hand (:meth:`callback_server.deliveries.DeliveryQueue._run_accept`)
because it cannot afford redis-py's generic retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
) -> tuple[tuple[str, ...], tuple[Any, ...]]:
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
"""One page of a ledger stream, newest first, filtered inside Redis (a search costs it ~1 ms a call)."""

LEDGER_OUTCOME = (
    INDEX_ENTRY
    + """
-- KEYS: the ledger stream, its index.  ARGV: expiry (Unix time), the delivery's 16 bytes, then the
-- entry's field names and values.
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('EXPIREAT', KEYS[1], ARGV[1])
index_entry(KEYS[2], ARGV[2], entry, ARGV[1])
return entry
"""
)
"""A worker's outcome entry, and its place in the stream's index, in one call."""

PROBE_CLEANUP = """
-- KEYS: the seen periods around the acceptance, the ledger streams of its period and the next,
--       the counters hash, the notice list, the probe's job hash, the two streams' indexes.
-- ARGV: period count, identity (16 bytes), counter field, notice TTL, the probe's task id.
-- O(1): the accept script noted the probe's ledger entry id in its job (scb_ledger_id).
local n = tonumber(ARGV[1])
for i = 1, n do redis.call('HDEL', KEYS[i], ARGV[2]) end
local entry = redis.call('HGET', KEYS[n + 5], 'scb_ledger_id')
for i = n + 1, n + 2 do
  if entry then redis.call('XDEL', KEYS[i], entry) end
  redis.call('HDEL', KEYS[i + 5], 'd:' .. ARGV[2], 't:' .. ARGV[5])
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('XLEN', KEYS[i]) == 0 then
    redis.call('DEL', KEYS[i], KEYS[i + 5])
  end
end
redis.call('HDEL', KEYS[n + 3], ARGV[3])
if KEYS[n + 4] ~= '' then
  redis.call('RPUSH', KEYS[n + 4], 'processed')
  redis.call('EXPIRE', KEYS[n + 4], ARGV[4])
end
return 1
"""
"""Remove every trace of a processed doctor probe and tell doctor it was processed."""

RESCUE = """
-- KEYS: the job hash, the queue, its intermediate list, the started, scheduled, failed and deferred
--       registries.
-- ARGV: job id, now (seconds), grace (seconds), the queue's name (a job of another queue is left alone).
-- A job that exists, has not finished, and is in none of these is orphaned. The first sweep that
-- sees it so only marks the time (a move between two of RQ's own commands is never seen here: each
-- of those is atomic, and so is this script); a later sweep, past the grace, queues it again.
-- Returns 1 when it queued the job, 0 otherwise.
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'finished' then return 0 end
if redis.call('HGET', KEYS[1], 'origin') ~= ARGV[4] then return 0 end
local id = ARGV[1]
local function placed()
  if redis.call('LPOS', KEYS[2], id) or redis.call('LPOS', KEYS[3], id) then return true end
  for i = 5, 7 do
    if redis.call('ZSCORE', KEYS[i], id) then return true end
  end
  local prefix = id .. ':'  -- the started registry holds job_id:execution_id
  for _, member in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    if member == id or string.sub(member, 1, #prefix) == prefix then return true end
  end
  return false
end
if placed() then
  redis.call('HDEL', KEYS[1], 'scb_orphan_seen')  -- a mark from an earlier sweep no longer holds
  return 0
end
local seen = tonumber(redis.call('HGET', KEYS[1], 'scb_orphan_seen'))
if not seen then
  redis.call('HSET', KEYS[1], 'scb_orphan_seen', ARGV[2])
  return 0
end
if tonumber(ARGV[2]) - seen < tonumber(ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], 'scb_orphan_seen')
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('RPUSH', KEYS[2], id)
return 1
"""
"""Queues again a job that RQ's bookkeeping left in no list or registry (see :mod:`workers.rescue`)."""

RERUN_ENQUEUE = (
    INDEX_ENTRY
    + """
-- KEYS: the run's marks (hash: task id -> delivery id), the job hash, the queue, rq:queues, the
--       ledger stream, its index, the counters hash.
-- ARGV: task id, job id, the delivery's 16 bytes, the delivery id, ledger expiry, ledger values
--       (type, event, source, mode), the counter field of a queued rerun task, the marks' lifetime
--       (seconds), then the job hash's field names and values.
-- Marks first: a task this run already queued (before a Ctrl-C, a kill, a resume) is never queued
-- again. The delivery's identity (scb:seen) is not touched: a rerun is not a delivery.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[4]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[11])
redis.call('HSET', KEYS[2], unpack(ARGV, 12))
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], KEYS[3])
local entry = redis.call('XADD', KEYS[5], '*', 'd', ARGV[3], 't', ARGV[1], 'y', ARGV[6], 'e', ARGV[7],
                        's', ARGV[8], 'm', ARGV[9])
redis.call('EXPIREAT', KEYS[5], ARGV[5])
index_entry(KEYS[6], ARGV[3], entry, ARGV[5])
-- The task's deliveries: this one is added only if the bucket does not list it yet.
local task_field = 't:' .. ARGV[1]
local listed = redis.call('HGET', KEYS[6], task_field) or ''
local known = false
for i = 1, #listed, 16 do
  if string.sub(listed, i, i + 15) == ARGV[3] then known = true; break end
end
if not known then redis.call('HSET', KEYS[6], task_field, listed .. ARGV[3]) end
redis.call('HINCRBYFLOAT', KEYS[7], ARGV[10], 1)
return 1
"""
)
"""Queue one rerun job unless the run queued its task already, with its ledger entry, in one call."""

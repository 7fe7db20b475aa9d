"""Named defaults; each can be overridden by the environment variable in its comment."""

PORT = 5000
"""PORT: where the web process listens when Heroku does not say."""

MAX_CONTENT_LENGTH = 10 * 1024 * 1024
"""MAX_CONTENT_LENGTH: the largest callback body accepted; larger ones get 413."""

DEDUP_TTL = 2 * 24 * 3600
"""DEDUP_TTL: how long a delivery's identity is remembered. It must outlast Scale's retries (24 h)
and the reconciler's reach (RECONCILE_INTERVAL + RECONCILE_OVERLAP: 26 h by default); two days
leave a day to spare. Each later event of a task is a new identity, so audits need no more."""

MIN_DEDUP_TTL = 24 * 3600
"""The floor for DEDUP_TTL and EFFECTS_TTL: shorter than Scale's retry window would let retries in twice."""

REDIS_TIMEOUT = 1.0
"""REDIS_TIMEOUT: seconds per Redis connect or command on the ack path, so a 503 comes within ~3 s."""

REDIS_POOL_SIZE = 2
"""REDIS_POOL_SIZE: Redis connections one process may open for the ack path, and as many again for
everything else (health, counters, the console): at most 4 per web process by default, so that two
web processes, a worker and the clock stay within Heroku Redis mini's 20 (docs/deploying.md)."""

CALLBACK_QUEUE = "callbacks"
"""CALLBACK_QUEUE: the RQ queue completed tasks are put on."""

HANDLER_TIMEOUT = 180
"""HANDLER_TIMEOUT: seconds a delivery's handlers may run before they are stopped and retried."""

HANDLER_RETRY_INTERVALS = (30, 300, 1800, 7200, 21600)
"""HANDLER_RETRY_INTERVALS: waits between tries of a failing handler: 6 tries over about 8.5 hours.
The first is short so that a delivery whose worker died (RQ notices within ~75 s and retries it
through this schedule) runs again within 2 minutes."""

EFFECTS_TTL_DONE = 3600
"""Seconds a delivery's handler completions are kept once every handler is done: long enough for
RQ to mark the job finished (a worker dying before that runs it again), and no longer."""

EFFECTS_TTL = 31 * 24 * 3600
"""EFFECTS_TTL: how long a handler's completion is remembered: past a failed job's replayable life."""

WORKER_HEARTBEAT = 5
"""WORKER_HEARTBEAT: seconds between the heartbeats a worker sends for its running job (RQ's job
monitoring interval); a job whose heartbeat stops is abandoned 60 s (RQ's margin) plus this later."""

WORKER_MAINTENANCE_INTERVAL = 10
"""WORKER_MAINTENANCE_INTERVAL: seconds between RQ's registry cleanups, which retry abandoned jobs;
an idle worker also waits at most this long on the queue, so the cleanup really runs this often."""

WORKER_PROCESSES = 1
"""WORKER_PROCESSES: RQ workers per worker dyno; above 1 they run under RQ's WorkerPool."""

REDIS_PATIENCE = 60.0
"""Seconds a worker keeps retrying (with backoff) to record a handler's completion while Redis is
unreachable or full, before giving up and letting the handler run again on the retry."""

HANDLER_KILL_GRACE = 2
"""Seconds past HANDLER_TIMEOUT after which a job's process is ended outright if the timeout
exception did not stop it (a handler that swallowed it, or one stuck in C code)."""

WORKER_RESTART_BACKOFF_CAP = 30.0
"""Longest wait, in seconds, before a worker starts RQ's work loop again after it ended on a Redis error."""

QUARANTINE_PREFIX = "scb:quarantine"
"""Redis key prefix of quarantined deliveries (kept until replayed, deleted or QUARANTINE_TTL passes)."""

QUARANTINE_TTL = 30 * 24 * 3600
"""QUARANTINE_TTL: seconds a quarantined delivery is kept after it was last received (30 days)."""

MIN_SECRET_LENGTH = 16
"""Fewest characters of a callback key or DASHBOARD_PASSWORD: shorter ones are refused at start."""

DEV_FLAG = "CALLBACK_SERVER_DEV"
"""Set to 1 by `python -m callback_server dev` only: its local keys may be short."""

SEEN_PREFIX = "scb:seen"
"""Redis key prefix of delivery identities already accepted."""

EFFECTS_PREFIX = "scb:done"
"""Redis key prefix of a delivery's effects record (handlers that completed; :mod:`workers.effects`)."""

UNHANDLED_KEY = "scb:unhandled"
"""Redis list of deliveries whose task type no handler serves (recorded by the fallback)."""

SCALE_API_URL = "https://api.scale.com/v1"
"""SCALE_API_URL: the Scale API the reconciler asks; point it at the simulator locally."""

RECONCILE_LOOKBACK = 2 * 24 * 3600
"""RECONCILE_LOOKBACK: how far back, by update time, a first run (or one
after a gap longer than DEDUP_TTL) looks; at most DEDUP_TTL, or old deliveries would look new."""

RECONCILE_OVERLAP = 25 * 3600
"""RECONCILE_OVERLAP: each run starts this long before the previous complete one ended: clock skew
between this host and Scale, tasks updated while a run was paging, and Scale's 24 h of retries."""

RECONCILE_INTERVAL = 3600
"""RECONCILE_INTERVAL: seconds between scheduled reconciliations."""

RESULT_TTL = 0
"""A finished job is deleted at once, result and all: nobody reads RQ's results, and the ledger
(LEDGER_TTL) keeps what happened to each delivery at a fraction of the memory."""

LEDGER_TTL = 3 * 24 * 3600
"""LEDGER_TTL: how long the delivery ledger (what arrived, what became of it) is kept: 3 days."""

FAILURE_TTL = 30 * 24 * 3600
"""Seconds a job that ran out of retries stays in the failed registry, ready for `failed replay`."""

CALLBACK_HANDLERS = ("workers.handlers",)
"""CALLBACK_HANDLERS: handler modules a worker imports; by default the examples (2016's types, today's common ones)."""

LOG_FORMAT = "logfmt"
"""LOG_FORMAT: how every process prints its log lines: ``logfmt``, or ``json`` for drains that want JSON."""

LOG_FORMATS = ("logfmt", "json")
"""The accepted values of LOG_FORMAT."""

PROBE_TYPE = "scb_probe"
"""The task type reserved for doctor's probe (callback_server/probe.py): Scale has no such type."""

LOCAL_HOSTS = ("localhost", ".localhost", "127.0.0.1")
"""The Host names the local dev stack and the simulator answer (Flask's TRUSTED_HOSTS): any other
name is refused with 400, so a web page cannot reach them through DNS rebinding."""

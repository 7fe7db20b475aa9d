"""Named defaults of the simulator; each can be overridden by the environment variable in its docstring."""

from __future__ import annotations

PORT = 8090
"""PORT: where `python -m scale_sim` listens."""

HOST = "127.0.0.1"
"""SCALE_SIM_HOST: the interface to bind; loopback, because the HTML page has no authentication."""

COMPLETION_DELAY = 2.0
"""SCALE_SIM_COMPLETION_DELAY: wall-clock seconds from creation until a task completes by itself."""

TIME_SCALE = 1.0
"""SCALE_SIM_TIME_SCALE: factor on the callback retry schedule (0.001 runs it a thousand times faster)."""

RATE_LIMIT = 0.0
"""SCALE_SIM_RATE_LIMIT: API requests per second per key before 429; 0 means unlimited."""

SEED = 0
"""SCALE_SIM_SEED: seeds generated responses (together with the task id), so runs are reproducible."""

DATA_PATH = "var/scale_sim.sqlite3"
"""SCALE_SIM_DATA: the SQLite file holding tasks and pending deliveries (':memory:' keeps nothing)."""

CALLBACK_TIMEOUT = 10.0
"""SCALE_SIM_CALLBACK_TIMEOUT: seconds one callback POST may take before it counts as a failed try."""

MAX_ATTEMPTS = 20
"""Tries per callback before it is given up and the task's callback_succeeded becomes false."""

RETRY_DELAYS: tuple[float, ...] = (
    10, 30, 60, 120, 300, 600, 900, 1800, 2700, 3600,
    3600, 5400, 7200, 7200, 7200, 10800, 10800, 10800, 13280,
)  # fmt: skip
"""Seconds between the 20 tries (before SCALE_SIM_TIME_SCALE): growing gaps that add up to 24 hours."""

REORDER_HOLD_LIMIT = 60.0
"""Wall-clock seconds a `reorder` callback waits for a later task's callback before it is sent anyway."""

DELIVERY_WORKERS = 8
"""Callbacks in flight at once, so one slow receiver URL does not stall every other task."""

MAX_IDLE_WAIT = 1.0
"""Longest the scheduler sleeps without being woken, a backstop against a missed notification."""

OVERSIZE_BYTES = 10 * 1024 * 1024 + 512 * 1024
"""JSON size an `oversize` annotation response grows to: past a receiver's 10 MiB body limit."""

MAX_DUPLICATES = 20
"""Upper bound of `duplicate=N`, so a typo cannot flood a receiver."""

MAX_OBJECTS_TO_ANNOTATE = 6
"""The reference's limit on objects_to_annotate."""

AUDIO_INSTRUCTION = "Please transcribe the attached audio file."
"""The instruction an audiotranscription task gets when none is given (as in the reference's example)."""

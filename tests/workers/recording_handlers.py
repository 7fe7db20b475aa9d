"""Handlers for tests: each records its run in Redis, and can be told to fail or hang.

Imported by real worker processes through CALLBACK_HANDLERS, so they talk to Redis only
through the job's own connection, and take their instructions from Redis keys.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from rq import get_current_job

from workers import handles
from workers.payloads import Task

EFFECTS = "test:effects"
"""List of "handler:delivery_id" for every completed run."""

STARTED = "test:started"
"""List of "handler:delivery_id" for every started run."""


def _conn():
    job = get_current_job()
    assert job is not None
    return job.connection


def _note(task: Task, handler: str, key: str) -> None:
    _conn().rpush(key, f"{handler}:{task.delivery_id}")


@handles("*")
def record(task: Task) -> None:
    """Always succeeds; fails while test:fail:record counts down, hangs while test:hang:record does."""
    conn = _conn()
    gate = conn.get("test:gate:record")
    _note(task, "record", STARTED)
    if gate is not None:
        # Do the work, then wait for the test to open the gate (a file: Redis is stopped meanwhile),
        # say so, and return with Redis down.
        _note(task, "record", EFFECTS)
        while not os.path.exists(gate):
            time.sleep(0.01)
        with open(gate.decode() + ".passed", "w"):
            pass
        return
    if conn.decr("test:fail:record") >= 0:
        raise RuntimeError("record told to fail")
    if conn.decr("test:hang:record") >= 0:
        time.sleep(3600)
    if conn.decr("test:kill:record") >= 0:
        os.kill(os.getpid(), signal.SIGKILL)  # a handler that takes its worker down (OOM, a segfault)
    if conn.decr("test:stuck_in_c:record") >= 0:
        stuck_in_c(3600)
    if conn.decr("test:swallow:record") >= 0:
        swallow_everything(3600)
    pause = conn.get("test:sleep:record")
    if pause is not None:
        time.sleep(float(pause))
    _note(task, "record", EFFECTS)


@handles("*")
def second(task: Task) -> None:
    """A second handler of every type, to show isolation; hangs while test:hang:second:<delivery> counts down."""
    conn = _conn()
    _note(task, "second", STARTED)
    if conn.decr("test:fail:second") >= 0:
        raise RuntimeError("second told to fail")
    if conn.decr(f"test:hang:second:{task.delivery_id}") >= 0:
        time.sleep(3600)
    _note(task, "second", EFFECTS)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def stuck_in_c(seconds: int) -> None:
    """A C call that holds the GIL and ignores signals: ppoll() with every signal masked, through PyDLL.

    No Python signal handler (RQ's timeout alarm) can run until it returns, and no other thread
    of this process can run Python: what a stuck native library looks like from inside.
    """
    libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held for the whole call
    every_signal = (ctypes.c_ubyte * 128)(*([0xFF] * 128))  # a full sigset_t
    libc.ppoll(None, 0, ctypes.byref(_Timespec(seconds, 0)), every_signal)


def swallow_everything(seconds: float) -> None:
    """A handler that catches every exception, RQ's timeout included, and carries on."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except BaseException:  # the point of this handler
            pass

"""Faults on demand: parse `SCALE_SIM_FAULTS` and a task's `metadata.sim_faults` into one plan."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scale_sim import defaults
from scale_sim.exceptions import FaultSpecError

FLAG_FAULTS = frozenset({"reorder", "wrong_key", "drop", "oversize", "error"})
"""Faults that take no value (`error` fails the task at creation instead of completing it)."""

VALUED_FAULTS = frozenset({"duplicate", "delay"})
"""Faults that take `=VALUE` (duplicate's is optional and means 2)."""

FAULT_NAMES = FLAG_FAULTS | VALUED_FAULTS
"""Every fault the simulator knows."""

FaultValues = dict[str, float | int | bool]
"""Parsed faults keyed by name: True for flags, copies for duplicate, seconds for delay."""


@dataclass(frozen=True)
class Faults:
    """What happens to one task's callbacks: how many copies, when, with which key, whether at all (and `error`)."""

    duplicate: int = 1
    reorder: bool = False
    wrong_key: bool = False
    delay: float = 0.0
    drop: bool = False
    oversize: bool = False
    error: bool = False

    @classmethod
    def from_values(cls, values: Mapping[str, float | int | bool]) -> Faults:
        """Build from parsed values (see :func:`parse_faults`)."""
        return cls(
            duplicate=int(values.get("duplicate", 1)),
            reorder=bool(values.get("reorder", False)),
            wrong_key=bool(values.get("wrong_key", False)),
            delay=float(values.get("delay", 0.0)),
            drop=bool(values.get("drop", False)),
            oversize=bool(values.get("oversize", False)),
            error=bool(values.get("error", False)),
        )

    def describe(self) -> list[str]:
        """The faults in effect, written as specs (``["duplicate=2", "wrong_key"]``)."""
        specs = []
        if self.duplicate != 1:
            specs.append(f"duplicate={self.duplicate}")
        specs.extend(name for name in ("reorder", "wrong_key", "drop", "oversize", "error") if getattr(self, name))
        if self.delay:
            specs.append(f"delay={self.delay:g}")
        return specs


def _parse_one(item: str) -> tuple[str, float | int | bool]:
    name, sep, raw = item.partition("=")
    name, raw = name.strip(), raw.strip()
    if name not in FAULT_NAMES:
        known = ", ".join(sorted(FAULT_NAMES))
        raise FaultSpecError(f"unknown fault {name!r} (known: {known})")
    if name in FLAG_FAULTS:
        if sep:
            raise FaultSpecError(f"fault {name!r} takes no value")
        return name, True
    if name == "duplicate":
        if not sep:
            return name, 2
        try:
            copies = int(raw)
        except ValueError:
            raise FaultSpecError(f"duplicate=N needs a whole number of copies, got {raw!r}") from None
        if not 1 <= copies <= defaults.MAX_DUPLICATES:
            raise FaultSpecError(f"duplicate=N needs 1 <= N <= {defaults.MAX_DUPLICATES}, got {copies}")
        return name, copies
    # delay
    if not sep:
        raise FaultSpecError("delay needs a value: delay=SECONDS")
    try:
        seconds = float(raw)
    except ValueError:
        raise FaultSpecError(f"delay=SECONDS needs a number, got {raw!r}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise FaultSpecError(f"delay=SECONDS needs a finite number >= 0, got {raw!r}")
    return name, seconds


def parse_faults(items: Iterable[str]) -> FaultValues:
    """Parse fault specs like ``["duplicate=3", "wrong_key"]``; raise FaultSpecError on an unknown one."""
    values: FaultValues = {}
    for item in items:
        if not item.strip():
            continue
        name, value = _parse_one(item)
        values[name] = value
    return values


def parse_fault_list(value: Any) -> FaultValues:
    """Parse `metadata.sim_faults`: a list of specs, or one comma-separated string."""
    if isinstance(value, str):
        return parse_faults(value.split(","))
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return parse_faults(value)
    raise FaultSpecError("sim_faults must be a list of fault names or a comma-separated string")


def effective_faults(env_faults: Mapping[str, float | int | bool], task_faults: Mapping[str, Any]) -> Faults:
    """The faults for one task: SCALE_SIM_FAULTS, with the task's own list overriding same-named ones."""
    merged: dict[str, Any] = dict(env_faults)
    merged.update(task_faults)
    return Faults.from_values(merged)

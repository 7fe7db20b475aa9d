"""Benchmark handler: a team's audit trail, ``@handles("*", events="*")``, doing nothing.

With it, ``python -m bench.footprint --handlers bench.handlers,bench.audit_trail`` shows what a
catch-all handler costs in Redis: a delivery it served is not "unhandled", so nothing more.
"""

from __future__ import annotations

from workers import handles
from workers.payloads import Task


@handles("*", events="*")
def audit_trail(task: Task) -> None:
    """Does nothing: a real one would write the delivery to the team's own store."""

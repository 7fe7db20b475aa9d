"""A receiver for Scale API callbacks: verify, validate, deduplicate, queue durably, never lose one.

The core is this package; the web tier is :mod:`callback_server.web`, the only part that loads
Flask (workers and the command line never do).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``callback_server:create_app()`` (the Procfile's before 0.2) still names the app factory, loaded on use."""
    if name == "create_app":
        from callback_server.web import create_app

        return create_app
    raise AttributeError(f"module 'callback_server' has no attribute {name!r}")

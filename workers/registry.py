"""The handler registry: ``@handles("annotation")`` plugs a plain function in for a task type.

Registration happens at import; registering the same function for the same type twice is a
mistake (usually a module imported under two names) and fails loudly then, not at 3 a.m.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from callback_server.exceptions import HandlerRegistrationError

log = logging.getLogger(__name__)

ANY = "*"
"""The task type that matches every delivery."""

Handler = Callable[[Any], object]
F = TypeVar("F", bound=Handler)


def handler_name(fn: Handler) -> str:
    """A stable name for a handler: its dotted path, which keys its completion records."""
    return f"{fn.__module__}.{getattr(fn, '__qualname__', repr(fn))}"


@dataclass(frozen=True)
class Registration:
    """One handler for one task type."""

    task_type: str
    name: str
    fn: Handler


class HandlerRegistry:
    """Handlers by task type, plus handlers for every type, plus a fallback for the unserved."""

    def __init__(self, fallback: Handler | None = None) -> None:
        self._by_type: dict[str, list[Registration]] = {}
        self.fallback = fallback

    def register(self, task_type: str, fn: F) -> F:
        """Add ``fn`` for ``task_type`` (``"*"`` for all); a second identical registration raises."""
        if not isinstance(task_type, str) or not task_type:
            raise HandlerRegistrationError(f"task type must be a non-empty string, got {task_type!r}")
        if not callable(fn):
            raise HandlerRegistrationError(f"handler for {task_type!r} is not callable: {fn!r}")
        name = handler_name(fn)
        existing = self._by_type.setdefault(task_type, [])
        if any(r.name == name for r in existing):
            raise HandlerRegistrationError(f"{name} is already registered for {task_type!r}")
        existing.append(Registration(task_type, name, fn))
        return fn

    def handles(self, task_type: str) -> Callable[[F], F]:
        """Decorator form of :meth:`register`."""

        def decorate(fn: F) -> F:
            return self.register(task_type, fn)

        return decorate

    def handlers_for(self, task_type: str) -> list[Registration]:
        """Who runs for a delivery of ``task_type``: its handlers, then the ``*`` ones, else the fallback."""
        found = [*self._by_type.get(task_type, ()), *self._by_type.get(ANY, ())]
        if not self._by_type.get(task_type) and self.fallback is not None:
            found.insert(0, Registration(task_type, handler_name(self.fallback), self.fallback))
        return found

    def task_types(self) -> list[str]:
        """The task types with at least one handler."""
        return sorted(t for t, regs in self._by_type.items() if regs)

    def clear(self) -> None:
        """Forget every registration (tests)."""
        self._by_type.clear()


def import_handler_modules(names: Iterable[str]) -> list[str]:
    """Import each dotted module so its ``@handles`` run; a failure names the module and stops the worker."""
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise HandlerRegistrationError(
                f"CALLBACK_HANDLERS: cannot import {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        imported.append(name)
    return imported

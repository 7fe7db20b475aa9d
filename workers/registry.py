"""The handler registry: ``@handles("annotation")`` plugs a plain function in for a task type.

A handler gets its type's *results* by default: completions, and audits that fixed the
response. Other events are opted into with ``events=``: ``@handles("categorization",
events={"error"})``, ``events="*"`` for all of them.

Registration happens at import; registering the same function for the same type twice is a
mistake (usually a module imported under two names) and fails loudly then, not at 3 a.m.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from callback_server.events import COMPLETED, EVENTS, Event
from callback_server.exceptions import HandlerRegistrationError
from workers.unhandled import record_unhandled

log = logging.getLogger(__name__)

ANY = "*"
"""The task type that matches every delivery."""

COMPLETION = Event(COMPLETED)

RESULTS = None
"""``events`` of a handler that takes its type's results: completions and fixed audits (the default)."""

Handler = Callable[[Any], object]
F = TypeVar("F", bound=Handler)
EventsArg = str | Iterable[str] | None


def _events(task_type: str, events: EventsArg) -> frozenset[str] | None:
    """``events=`` as given to ``@handles``, checked: None (results), ``"*"``, or event names."""
    if events is None:
        return RESULTS
    if events == ANY:
        return frozenset(EVENTS)
    names = frozenset([events] if isinstance(events, str) else events)
    unknown = sorted(names - set(EVENTS))
    if unknown or not names:
        raise HandlerRegistrationError(
            f"events for {task_type!r} must be '*' or some of {', '.join(EVENTS)}; got {sorted(names) or 'none'}"
        )
    return names


def handler_name(fn: Handler) -> str:
    """A stable name for a handler: its dotted path, which keys its entry in the effects record."""
    return f"{fn.__module__}.{getattr(fn, '__qualname__', repr(fn))}"


@dataclass(frozen=True)
class Registration:
    """One handler for one task type and the events it asked for (None: results only)."""

    task_type: str
    name: str
    fn: Handler
    events: frozenset[str] | None = RESULTS

    def wants(self, event: Event) -> bool:
        """Whether this handler runs for a delivery of ``event``."""
        return event.carries_result if self.events is None else event.name in self.events


class HandlerRegistry:
    """Handlers by task type, plus handlers for every type, plus a fallback for the unserved."""

    def __init__(self, fallback: Handler | None = None) -> None:
        self._by_type: dict[str, list[Registration]] = {}
        self.fallback = fallback

    def register(self, task_type: str, fn: F, events: EventsArg = RESULTS) -> F:
        """Add ``fn`` for ``task_type`` (``"*"`` for all) and ``events``; a second registration raises."""
        if not isinstance(task_type, str) or not task_type:
            raise HandlerRegistrationError(f"task type must be a non-empty string, got {task_type!r}")
        if not callable(fn):
            raise HandlerRegistrationError(f"handler for {task_type!r} is not callable: {fn!r}")
        wanted = _events(task_type, events)
        name = handler_name(fn)
        existing = self._by_type.setdefault(task_type, [])
        if any(r.name == name for r in existing):
            raise HandlerRegistrationError(f"{name} is already registered for {task_type!r}")
        existing.append(Registration(task_type, name, fn, wanted))
        return fn

    def handles(self, task_type: str, *, events: EventsArg = RESULTS) -> Callable[[F], F]:
        """Decorator form of :meth:`register`: ``@handles("categorization", events={"error"})``."""

        def decorate(fn: F) -> F:
            return self.register(task_type, fn, events)

        return decorate

    def handlers_for(self, task_type: str, event: Event = COMPLETION) -> list[Registration]:
        """Who runs for a delivery: its type's handlers for the event, then the ``*`` ones.

        When no handler asked for it (neither its type's nor a ``*`` one), the fallback runs
        and records it, so a delivery nobody serves is never silently dropped. A ``*`` handler
        serves: a team's audit trail must not turn every delivery into an "unhandled" note.
        """
        own = [r for r in self._by_type.get(task_type, ()) if asks(r, task_type, event)]
        found = [*own, *(r for r in self._by_type.get(ANY, ()) if asks(r, task_type, event))]
        if not found and self.fallback is not None:
            found.append(self.fallback_registration(task_type))
        return found

    def fallback_registration(self, task_type: str) -> Registration:
        """The fallback as the registration that serves a delivery of ``task_type`` nobody asked for."""
        if self.fallback is None:
            raise HandlerRegistrationError("this registry has no fallback")
        return Registration(task_type, handler_name(self.fallback), self.fallback)

    def registrations(self) -> list[Registration]:
        """Every registration, by task type (``*`` first, as it sorts), each type's in registration order."""
        return [r for task_type in sorted(self._by_type) for r in self._by_type[task_type]]

    def names(self) -> list[str]:
        """Every registered handler's name, and the fallback's."""
        found = {r.name for regs in self._by_type.values() for r in regs}
        if self.fallback is not None:
            found.add(handler_name(self.fallback))
        return sorted(found)

    def task_types(self) -> list[str]:
        """The task types with at least one handler."""
        return sorted(t for t, regs in self._by_type.items() if regs)

    def clear(self) -> None:
        """Forget every registration (tests)."""
        self._by_type.clear()

    def snapshot(self) -> dict[str, list[Registration]]:
        """Every registration as it stands, for :meth:`restore` (tests that plug handlers in for a while)."""
        return {task_type: list(regs) for task_type, regs in self._by_type.items()}

    def restore(self, snapshot: dict[str, list[Registration]]) -> None:
        """Put the registrations back as a :meth:`snapshot` had them."""
        self._by_type = {task_type: list(regs) for task_type, regs in snapshot.items()}


def asks(registration: Registration, task_type: str, event: Event) -> bool:
    """Whether a registration asks for a delivery of this type and event: the one rule of
    :meth:`HandlerRegistry.handlers_for`, which a rerun's planner applies to the handlers it names."""
    return registration.task_type in (task_type, ANY) and registration.wants(event)


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


registry = HandlerRegistry(fallback=record_unhandled)
"""The registry ``@handles`` adds to and the worker reads; what no handler asked for is recorded."""

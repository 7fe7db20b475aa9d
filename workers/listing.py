"""What handlers ``CALLBACK_HANDLERS`` loads, by type and event: ``python -m callback_server handlers``,
the worker's lines at start, and ``doctor``'s check all read this one list.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import click

from callback_server import defaults
from callback_server.config import callback_handler_modules
from callback_server.events import EVENTS
from callback_server.exceptions import HandlerRegistrationError
from workers.registry import ANY, HandlerRegistry, Registration, handler_name, import_handler_modules, registry

RESULTS_TEXT = "completed, audit fixed"
"""How a handler of results (``@handles(type)`` without ``events``) is listed."""

EVERY_EVENT_TEXT = "every event"
"""How ``events="*"`` is listed."""


@dataclass(frozen=True)
class HandlerRow:
    """One registration as listed: task type (``*`` for every type), the events it takes, its dotted name."""

    task_type: str
    events: str
    name: str


def events_text(registration: Registration) -> str:
    """The events a registration takes, as a person reads them (``audit`` there means every audit result)."""
    if registration.events is None:
        return RESULTS_TEXT
    if registration.events == frozenset(EVENTS):
        return EVERY_EVENT_TEXT
    return ", ".join(event for event in EVENTS if event in registration.events)


def handler_rows(source: HandlerRegistry = registry) -> list[HandlerRow]:
    """Every registration, by task type (``*`` last: those run after a type's own), each in registration order."""
    registrations = sorted(source.registrations(), key=lambda r: (r.task_type == ANY, r.task_type))
    return [HandlerRow(r.task_type, events_text(r), r.name) for r in registrations]


def load_handlers(modules: Iterable[str]) -> list[HandlerRow]:
    """Import the modules (as a worker does at start) and list what they registered.

    Raises :class:`HandlerRegistrationError` naming the first module that does not import.
    """
    import_handler_modules(modules)
    return handler_rows()


def fallback_note(source: HandlerRegistry = registry) -> str:
    """What becomes of a delivery no listed handler asks for."""
    name = handler_name(source.fallback) if source.fallback is not None else "none"
    return f"a delivery no handler asks for goes to the fallback, {name}: noted in {defaults.UNHANDLED_KEY}"


def table(rows: list[HandlerRow]) -> list[str]:
    """The rows as aligned text lines, with a header."""
    header = HandlerRow("type", "events", "handler")
    type_width = max(len(row.task_type) for row in [header, *rows])
    events_width = max(len(row.events) for row in [header, *rows])
    return [f"{row.task_type:<{type_width}}  {row.events:<{events_width}}  {row.name}" for row in [header, *rows]]


def log_handlers(logger: logging.Logger, modules: Iterable[str]) -> None:
    """The worker's lines at start: one per handler loaded, with the same fields as the command lists."""
    rows = handler_rows()
    for row in rows:
        logger.info("handler loaded", extra={"type": row.task_type, "events": row.events, "handler": row.name})
    if not rows:
        logger.warning(
            "no handler loaded from CALLBACK_HANDLERS=%s: every delivery goes to the fallback",
            ",".join(modules),
            extra={"outcome": "no_handlers"},
        )


@click.command("handlers")
def handlers_command() -> None:
    """List the handlers CALLBACK_HANDLERS loads, by task type and event, with their dotted names.

    Exits non-zero, naming the module, when one does not import. Reads no other variable.
    """
    modules = callback_handler_modules(os.environ)
    try:
        rows = load_handlers(modules)
    except HandlerRegistrationError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"CALLBACK_HANDLERS={','.join(modules)}: {len(rows)} handler(s)")
    for line in table(rows):
        click.echo(line)
    click.echo(fallback_note())

"""Testing your handlers: recorded callbacks, the typed task a handler gets, and the real routing, in process.

::

    from workers.testing import load_fixture, make_task, run_handlers

    outcome = run_handlers(load_fixture("imageannotation"), handlers=[store_shapes])
    assert outcome.failed == {}

Nothing here talks to Redis or RQ: :func:`run_handlers` routes a delivery exactly as a worker does
(its type, its event, the ``"*"`` handlers, the fallback for what nobody asked for) and calls the
handlers in this process, so a handler's test needs nothing but pytest. The recorded bodies ship
with the package (``workers/fixtures/<type>/<event>.json``), recorded from the Scale simulator.
"""

from __future__ import annotations

import importlib
import json
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from callback_server import ledger
from callback_server.auth import LIVE, TEST
from callback_server.deliveries import CALLBACK, Delivery
from callback_server.events import AUDIT, EVENTS, REVIEW_RESULTS, Event
from callback_server.exceptions import HandlerRegistrationError, InvalidCallbackError, NoSuchFixtureError
from callback_server.probe import PROBE_TYPE
from callback_server.schemas import COMMON_TYPES, REFERENCE_TYPES, load_callback, validate_callback
from workers.payloads import Task, build_task
from workers.registry import HandlerRegistry, Registration, handler_name, registry

__all__ = ["FIXTURE_TYPES", "Outcome", "load_fixture", "make_task", "run_handlers"]

FIXTURE_TYPES = (*REFERENCE_TYPES, *COMMON_TYPES)
"""The task types with recorded callbacks: the 2016 seven and today's common seven (file-result types included)."""

MODES = (LIVE, TEST)
"""A delivery's ``mode``: which key it came with."""

SOURCES = tuple(ledger.SOURCES)
"""A delivery's ``source``: Scale's POST, the reconciler, a quarantine replay, ``fetch``, a rerun."""

HandlerRef = Callable[..., object] | str
"""A handler as :func:`run_handlers` takes it: the decorated function, or its dotted name."""


def _choices(values: Iterable[str]) -> str:
    return ", ".join(values)


def _fixture_stem(task_type: str, event: str, review_status: str | None) -> str:
    """The file name (without ``.json``) of a recorded event; every bad argument says what would do."""
    if task_type not in FIXTURE_TYPES:
        raise NoSuchFixtureError(
            f"no recorded callbacks for task type {task_type!r}; there are: {_choices(FIXTURE_TYPES)}"
        )
    if event not in EVENTS:
        raise NoSuchFixtureError(f"no event {event!r}; events are: {_choices(EVENTS)}")
    if event != AUDIT:
        if review_status is not None:
            raise NoSuchFixtureError(f"review_status is for event='audit' only, not {event!r}")
        return event
    if review_status not in REVIEW_RESULTS:
        raise NoSuchFixtureError(
            f"an audit needs review_status, one of: {_choices(REVIEW_RESULTS)} (got {review_status!r})"
        )
    return f"{AUDIT}_{review_status}"


def load_fixture(task_type: str, event: str = "completed", review_status: str | None = None) -> dict[str, Any]:
    """A recorded callback body of ``task_type`` for ``event`` (an audit: with its ``review_status``).

    A new dict on every call, so a test may change it (``body["task"]["metadata"]["item"] = 7``).
    """
    stem = _fixture_stem(task_type, event, review_status)
    text = resources.files("workers").joinpath("fixtures", task_type, f"{stem}.json").read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text)
    return body


def make_task(body: dict[str, Any] | str | bytes, *, mode: str = LIVE, source: str = CALLBACK) -> Task:
    """The typed task a handler gets for ``body``, built as a worker builds it.

    The body is validated as the receiver validates it: one it would quarantine raises
    :class:`~callback_server.exceptions.InvalidCallbackError` with the same details. ``body`` may
    also be the JSON text. ``mode`` is the key it came with (``live``/``test``), ``source`` where it
    came from (``callback``, ``reconcile``, ``replay``, ``fetch``, ``rerun``).
    """
    if mode not in MODES:
        raise InvalidCallbackError(f"mode must be one of {_choices(MODES)}, got {mode!r}")
    if source not in SOURCES:
        raise InvalidCallbackError(f"source must be one of {_choices(SOURCES)}, got {source!r}")
    if isinstance(body, str | bytes):
        parsed = load_callback(body.encode("utf-8") if isinstance(body, str) else body)
    elif isinstance(body, dict):
        errors = validate_callback(body)
        if errors:
            raise InvalidCallbackError(
                "body does not match the callback schema (the receiver would quarantine it)", errors
            )
        parsed = body
    else:
        raise InvalidCallbackError(
            f"body must be a callback body (a dict, or its JSON text), got {type(body).__name__}"
        )
    delivery = Delivery.from_body(parsed, mode=mode, source=source)
    # Through JSON, as the job travels: the handler gets what a worker's would, and the caller's dict stays its own.
    job_arg: dict[str, Any] = json.loads(json.dumps(delivery.as_job_arg()))
    return build_task(job_arg)


@dataclass(frozen=True)
class Outcome:
    """What :func:`run_handlers` did with one delivery, by handler dotted name.

    ``ran``: the handlers that returned, in the order they ran (the fallback's name when no handler
    asked for the delivery: then ``unhandled`` is True, and a worker would record it in
    ``scb:unhandled``). ``skipped``: the handlers in scope the routing did not pick for this type
    and event. ``failed``: each handler that raised, with its traceback.
    """

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unhandled: bool = False

    @property
    def ok(self) -> bool:
        """No handler raised."""
        return not self.failed


def _resolve(ref: HandlerRef) -> str:
    """The dotted name of a handler given as a function or a name; a name's module is imported first."""
    if isinstance(ref, str):
        module, _, _ = ref.rpartition(".")
        if not module:
            raise HandlerRegistrationError(f"{ref!r} is not a dotted name (module.function)")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise HandlerRegistrationError(
                f"cannot import {module!r} for {ref!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return ref
    if callable(ref):
        return handler_name(ref)
    raise HandlerRegistrationError(f"a handler is a decorated function or its dotted name, got {ref!r}")


def _scope(handlers: Iterable[HandlerRef] | None) -> HandlerRegistry:
    """The registry to route with: every registered handler, or only the given ones (with the same fallback)."""
    if handlers is None:
        return registry
    if isinstance(handlers, str) or callable(handlers):
        handlers = [handlers]
    wanted = [_resolve(ref) for ref in handlers]
    registered = registry.registrations()
    known = {r.name for r in registered}
    missing = [name for name in wanted if name not in known]
    if missing:
        raise HandlerRegistrationError(
            f"not registered: {_choices(missing)}; decorate it with @handles(...) and import its module"
        )
    chosen: dict[str, list[Registration]] = {}
    for registration in registered:
        if registration.name in wanted:
            chosen.setdefault(registration.task_type, []).append(registration)
    scoped = HandlerRegistry(fallback=registry.fallback)
    scoped.restore(chosen)
    return scoped


def run_handlers(
    body_or_task: dict[str, Any] | str | bytes | Task, *, handlers: Iterable[HandlerRef] | None = None
) -> Outcome:
    """Route one delivery as a worker does and run its handlers here: a handler that raises is reported, not raised.

    ``body_or_task``: a callback body (see :func:`make_task`) or a task it made. ``handlers``: the
    functions or dotted names to route among (each must be registered with ``@handles``); by
    default every handler the imports registered. Nothing is recorded: every run is a first run.
    """
    task = body_or_task if isinstance(body_or_task, Task) else make_task(body_or_task)
    if task.type == PROBE_TYPE:
        raise InvalidCallbackError(f"{PROBE_TYPE!r} is doctor's probe: workers never give it to a handler")
    scope = _scope(handlers)
    routed = scope.handlers_for(task.type, Event(task.event, task.review_status))
    ran: list[str] = []
    failed: dict[str, str] = {}
    unhandled = False
    for registration in routed:
        if scope.fallback is not None and registration.fn is scope.fallback:
            # The fallback records the delivery in Redis; here, the Outcome says it.
            unhandled = True
            ran.append(registration.name)
            continue
        try:
            registration.fn(task)
        except Exception:
            failed[registration.name] = traceback.format_exc()
        else:
            ran.append(registration.name)
    picked = {r.name for r in routed}
    skipped = list(dict.fromkeys(r.name for r in scope.registrations() if r.name not in picked))
    return Outcome(ran=ran, skipped=skipped, failed=failed, unhandled=unhandled)

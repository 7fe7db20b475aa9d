"""The handler registry: decorators, '*', fallback, duplicates, CALLBACK_HANDLERS imports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from callback_server.events import Event
from callback_server.exceptions import HandlerRegistrationError
from workers.registry import HandlerRegistry, handler_name, import_handler_modules


def first(task: object) -> None:
    """A handler."""


def other(task: object) -> None:
    """Another handler."""


def fallback(task: object) -> None:
    """The fallback."""


def test_handles_registers_in_order_with_star_after_specific() -> None:
    registry = HandlerRegistry(fallback=fallback)
    registry.handles("annotation")(first)
    registry.handles("*")(other)
    assert [r.fn for r in registry.handlers_for("annotation")] == [first, other]
    assert registry.task_types() == ["*", "annotation"]


def test_a_star_handler_serves_a_type_nobody_else_serves_so_no_fallback() -> None:
    registry = HandlerRegistry(fallback=fallback)
    registry.register("*", other)
    assert [r.fn for r in registry.handlers_for("videoannotation")] == [other]
    # A "*" handler of results only does not serve an error: that one still goes to the fallback.
    assert [r.fn for r in registry.handlers_for("videoannotation", Event("error"))] == [fallback]


def test_fallback_alone_when_nothing_is_registered() -> None:
    registry = HandlerRegistry(fallback=fallback)
    assert [r.fn for r in registry.handlers_for("anything")] == [fallback]


def test_several_handlers_may_serve_one_type() -> None:
    registry = HandlerRegistry()
    registry.register("phonecall", first)
    registry.register("phonecall", other)
    assert [r.name for r in registry.handlers_for("phonecall")] == [handler_name(first), handler_name(other)]


def test_registering_the_same_handler_twice_fails_loudly() -> None:
    registry = HandlerRegistry()
    registry.register("comparison", first)
    with pytest.raises(HandlerRegistrationError, match="already registered for 'comparison'"):
        registry.register("comparison", first)


@pytest.mark.parametrize("task_type", ["", None, 3])
def test_bad_task_types_are_refused(task_type: object) -> None:
    with pytest.raises(HandlerRegistrationError, match="task type"):
        HandlerRegistry().register(task_type, first)  # type: ignore[arg-type]


def test_non_callable_handler_is_refused() -> None:
    with pytest.raises(HandlerRegistrationError, match="not callable"):
        HandlerRegistry().register("annotation", "not a function")  # type: ignore[arg-type]


def test_handler_names_are_dotted_paths() -> None:
    assert handler_name(first) == f"{__name__}.first"


def test_missing_handler_module_names_the_module() -> None:
    with pytest.raises(HandlerRegistrationError, match="cannot import 'no_such_module_xyz'"):
        import_handler_modules(["no_such_module_xyz"])


def test_handler_module_that_raises_names_the_module_and_error(tmp_path: Path) -> None:
    (tmp_path / "broken_handlers_mod.py").write_text("raise ValueError('boom at import')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(HandlerRegistrationError, match="broken_handlers_mod.*ValueError: boom at import"):
            import_handler_modules(["broken_handlers_mod"])
    finally:
        sys.path.remove(str(tmp_path))


# --- events ----------------------------------------------------------------------------------------

COMPLETED = Event("completed")
FIXED = Event("audit", "fixed")
ACCEPTED = Event("audit", "accepted")
ERROR = Event("error")
RECALLED = Event("recalled")


def served(registry: HandlerRegistry, task_type: str, event: Event) -> list[object]:
    return [r.fn for r in registry.handlers_for(task_type, event)]


def test_by_default_a_handler_gets_results_only() -> None:
    registry = HandlerRegistry(fallback=fallback)
    registry.handles("categorization")(first)
    assert served(registry, "categorization", COMPLETED) == [first]
    assert served(registry, "categorization", FIXED) == [first]
    for event in (ACCEPTED, ERROR, RECALLED, Event("canceled"), Event("audit", "rejected")):
        assert served(registry, "categorization", event) == [fallback], event


def test_events_opt_in_by_set_by_name_and_star() -> None:
    registry = HandlerRegistry(fallback=fallback)
    registry.handles("categorization", events={"error"})(first)
    registry.handles("imageannotation", events="recalled")(first)
    registry.handles("categorization", events="*")(other)
    assert served(registry, "categorization", ERROR) == [first, other]
    assert served(registry, "categorization", ACCEPTED) == [other]
    assert served(registry, "categorization", COMPLETED) == [other]
    assert served(registry, "imageannotation", RECALLED) == [first]
    assert served(registry, "imageannotation", COMPLETED) == [fallback]


def test_star_type_with_star_events_sees_every_delivery() -> None:
    registry = HandlerRegistry(fallback=fallback)
    registry.handles("*", events="*")(other)
    for event in (COMPLETED, ACCEPTED, ERROR, RECALLED):
        assert served(registry, "anything", event) == [other]
    registry.handles("anything", events="*")(first)
    assert served(registry, "anything", ERROR) == [first, other]


@pytest.mark.parametrize("events", [{"finished"}, set(), "all", ["completed", "audited"]])
def test_unknown_events_fail_at_registration(events: object) -> None:
    registry = HandlerRegistry()
    with pytest.raises(HandlerRegistrationError, match="events for 'categorization' must be"):
        registry.handles("categorization", events=events)(first)  # type: ignore[arg-type]
    assert registry.task_types() == []

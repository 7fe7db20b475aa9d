"""What CALLBACK_HANDLERS loads: `python -m callback_server handlers`, the worker's lines at start, and the rows."""

from __future__ import annotations

import re
import subprocess

import pytest

from callback_server.embedded import RedisProcess
from tests.support.processes import child_env, run_cli, stack_env, worker_args
from workers.listing import EVERY_EVENT_TEXT, RESULTS_TEXT, events_text, handler_rows, table
from workers.registry import HandlerRegistry, Registration


def first(task: object) -> None:
    """A handler."""


def other(task: object) -> None:
    """Another handler."""


def row_pattern(task_type: str, events: str, name: str) -> str:
    return rf"(?m)^{re.escape(task_type)} +{re.escape(events)} +{re.escape(name)}$"


def test_rows_list_each_registration_by_type_with_star_last() -> None:
    registry = HandlerRegistry()
    registry.register("*", other, events="*")
    registry.register("imageannotation", first, events={"recalled", "error"})
    registry.register("categorization", first)
    registry.register("categorization", other, events={"audit"})
    rows = [(row.task_type, row.events, row.name.rsplit(".", 1)[1]) for row in handler_rows(registry)]
    assert rows == [
        ("categorization", RESULTS_TEXT, "first"),
        ("categorization", "audit", "other"),
        ("imageannotation", "error, recalled", "first"),
        ("*", EVERY_EVENT_TEXT, "other"),
    ]
    lines = table(handler_rows(registry))
    assert lines[0].split() == ["type", "events", "handler"]
    assert len({line.index(" " + line.split()[-1]) for line in lines}) == 1  # the names line up


def test_events_are_written_in_the_order_events_have() -> None:
    registration = Registration("x", "x.y", first, frozenset({"canceled", "completed"}))
    assert events_text(registration) == "completed, canceled"


def test_the_command_lists_every_handler_with_its_dotted_name() -> None:
    done = run_cli(child_env(CALLBACK_HANDLERS="tests.workers.event_handlers"), "handlers")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("CALLBACK_HANDLERS=tests.workers.event_handlers: ")
    assert re.search(row_pattern("categorization", RESULTS_TEXT, "tests.workers.event_handlers.results"), out), out
    assert re.search(row_pattern("categorization", EVERY_EVENT_TEXT, "tests.workers.event_handlers.everything"), out)
    assert re.search(row_pattern("categorization", "audit, recalled", "tests.workers.event_handlers.reviews"), out)
    assert "workers.unhandled.record_unhandled" in out.splitlines()[-1]
    assert "workers.handlers." not in out  # only what CALLBACK_HANDLERS names


def test_the_default_lists_the_examples_and_needs_no_other_variable() -> None:
    done = run_cli(child_env(), "handlers")  # no REDIS_URL, no key
    assert done.returncode == 0, done.stderr
    for task_type in ("categorization", "audiotranscription", "imageannotation", "lidarannotation"):
        assert re.search(rf"(?m)^{task_type} .* workers\.handlers\.", done.stdout), (task_type, done.stdout)


def test_modules_that_register_nothing_list_nothing() -> None:
    done = run_cli(child_env(CALLBACK_HANDLERS="callback_server.render"), "handlers")
    assert done.returncode == 0 and done.stdout.startswith("CALLBACK_HANDLERS=callback_server.render: 0 handler(s)")


@pytest.mark.parametrize(
    ("modules", "named"),
    [
        ("workers.handlers,no_such_handlers_xyz", "cannot import 'no_such_handlers_xyz': ModuleNotFoundError"),
        ("tests.workers.broken_handlers", "cannot import 'tests.workers.broken_handlers': ZeroDivisionError"),
    ],
)
def test_a_module_that_does_not_import_is_named_without_a_traceback(modules: str, named: str) -> None:
    done = run_cli(child_env(CALLBACK_HANDLERS=modules), "handlers")
    assert done.returncode != 0
    assert f"Error: CALLBACK_HANDLERS: {named}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.slow  # starts a worker process (a --burst one, that exits once the queue is empty)
def test_the_worker_logs_the_same_list_at_start(redis_server: RedisProcess) -> None:
    env = stack_env(redis_server.url, CALLBACK_HANDLERS="tests.workers.event_handlers")
    done = subprocess.run([*worker_args("--burst")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = [line for line in done.stderr.splitlines() if 'msg="handler loaded"' in line]
    listed = run_cli(child_env(CALLBACK_HANDLERS="tests.workers.event_handlers"), "handlers").stdout.splitlines()[2:-1]
    assert len(loaded) == len(listed) >= 3
    assert any(
        "type=categorization" in line
        and 'events="audit, recalled"' in line
        and "handler=tests.workers.event_handlers.reviews" in line
        for line in loaded
    ), loaded

"""``workers.testing``: recorded callbacks, the typed task, and the real routing run in process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from callback_server.deliveries import Delivery
from callback_server.events import EVENTS, REVIEW_RESULTS
from callback_server.exceptions import HandlerRegistrationError, InvalidCallbackError, NoSuchFixtureError
from tests.support.processes import ROOT
from workers.payloads import TASK_CLASSES, FileResultTask, ImageannotationTask, Task, UnknownTask, build_task
from workers.registry import registry
from workers.testing import FIXTURE_TYPES, Outcome, load_fixture, make_task, run_handlers

RAN: list[str] = []


def store(task: Task) -> None:
    """A results handler of imageannotation."""
    RAN.append(f"store:{task.event}")


def on_error(task: Task) -> None:
    """An error handler of imageannotation that fails."""
    raise RuntimeError(f"cannot fetch {task.error.attachments[0].url if task.error else '?'}")


def trail(task: Task) -> None:
    """A "*" handler of every event."""
    RAN.append(f"trail:{task.type}:{task.event}")


def reviews(task: Task) -> None:
    """A handler of categorization's audits."""
    RAN.append(f"reviews:{task.review_status}")


NAME = f"{__name__}.%s"


@pytest.fixture
def kit() -> Iterator[None]:
    """The handlers above, registered for one test (the registry is put back after)."""
    saved = registry.snapshot()
    registry.clear()
    RAN.clear()
    registry.register("imageannotation", store)
    registry.register("imageannotation", on_error, events={"error"})
    registry.register("categorization", reviews, events={"audit"})
    registry.register("*", trail, events="*")
    yield
    registry.restore(saved)


# --- load_fixture ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", FIXTURE_TYPES)
def test_every_type_has_every_event(task_type: str) -> None:
    for event in EVENTS:
        for status in REVIEW_RESULTS if event == "audit" else (None,):
            body = load_fixture(task_type, event, status)
            delivery = Delivery.from_body(body, mode="live")
            assert body["task"]["type"] == task_type
            assert delivery.event == (event, status)


def test_fixture_types_cover_the_2016_types_and_todays_file_result_ones() -> None:
    assert {"categorization", "audiotranscription", "imageannotation", "videoannotation", "lidarannotation"} <= set(
        FIXTURE_TYPES
    )
    assert len(FIXTURE_TYPES) == 14


def test_each_call_gives_a_new_body() -> None:
    body = load_fixture("categorization")
    body["task"]["metadata"]["changed"] = True
    assert "changed" not in load_fixture("categorization")["task"]["metadata"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("segmentannotation",), "no recorded callbacks for task type 'segmentannotation'; there are: categorization"),
        (("categorization", "finished"), "no event 'finished'; events are: completed, audit, error"),
        (("categorization", "audit"), "an audit needs review_status, one of: accepted, fixed, rejected, commented"),
        (("categorization", "audit", "approved"), "(got 'approved')"),
        (("categorization", "completed", "fixed"), "review_status is for event='audit' only, not 'completed'"),
    ],
)
def test_a_fixture_that_does_not_exist_says_what_does(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(NoSuchFixtureError) as caught:
        load_fixture(*args)
    assert message in caught.value.message


# --- make_task ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", FIXTURE_TYPES)
def test_make_task_is_the_task_a_worker_builds(task_type: str) -> None:
    body = load_fixture(task_type, "audit", "fixed")
    task = make_task(body)
    assert type(task) is TASK_CLASSES[task_type]
    assert task == build_task(Delivery.from_body(body, mode="live").as_job_arg())
    assert (task.event, task.review_status, task.mode, task.source) == ("audit", "fixed", "live", "callback")
    assert task.response is not None


def test_make_task_types_the_response_and_takes_mode_and_source() -> None:
    task = make_task(load_fixture("imageannotation"), mode="test", source="reconcile")
    assert isinstance(task, ImageannotationTask)
    assert task.response.annotations and task.response.boxes
    assert (task.mode, task.source, task.is_test) == ("test", "reconcile", True)
    video = make_task(load_fixture("videoannotation"))
    assert isinstance(video, FileResultTask) and video.response.result_url.startswith("http")
    error = make_task(load_fixture("imageannotation", "error"))
    assert error.response is None and error.error is not None and error.error.attachments[0].status_code == 403


def test_make_task_takes_the_json_text_and_an_unknown_type() -> None:
    body = load_fixture("categorization")
    body["task"]["type"] = "segmentannotation"
    task = make_task(json.dumps(body))
    assert isinstance(task, UnknownTask) and task.response == body["response"]


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        ({"task_id": "x"}, {}, "body does not match the callback schema (the receiver would quarantine it)"),
        ("{not json", {}, "body is not valid JSON"),
        (["a", "list"], {}, "body must be a callback body (a dict, or its JSON text), got list"),
        (None, {"mode": "staging"}, "mode must be one of live, test, got 'staging'"),
        (None, {"source": "email"}, "source must be one of callback, reconcile, replay, fetch, rerun, got 'email'"),
    ],
)
def test_make_task_refuses_what_the_receiver_would_not_take(body: object, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidCallbackError) as caught:
        make_task(load_fixture("annotation") if body is None else body, **kwargs)  # type: ignore[arg-type]
    assert message in caught.value.message


def test_an_invalid_body_carries_the_validation_details() -> None:
    body = load_fixture("annotation")
    body["response"]["annotations"][0]["width"] = "wide"
    with pytest.raises(InvalidCallbackError) as caught:
        make_task(body)
    assert "width" in str(caught.value.details)


# --- run_handlers ---------------------------------------------------------------------------------


def test_a_completion_reaches_its_type_and_star_handlers(kit: None) -> None:
    outcome = run_handlers(load_fixture("imageannotation"))
    assert outcome == Outcome(
        ran=[NAME % "store", NAME % "trail"], skipped=[NAME % "reviews", NAME % "on_error"], failed={}
    )
    assert outcome.ok and not outcome.unhandled
    assert RAN == ["store:completed", "trail:imageannotation:completed"]


def test_a_failing_handler_is_reported_with_its_traceback_and_the_others_still_run(kit: None) -> None:
    outcome = run_handlers(load_fixture("imageannotation", "error"))
    assert list(outcome.failed) == [NAME % "on_error"]
    assert outcome.failed[NAME % "on_error"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: cannot fetch https://" in outcome.failed[NAME % "on_error"]
    assert outcome.ran == [NAME % "trail"] and not outcome.ok
    assert NAME % "store" in outcome.skipped


def test_given_handlers_limit_the_routing_and_the_fallback_takes_what_none_asked_for(kit: None) -> None:
    accepted = load_fixture("imageannotation", "audit", "accepted")
    outcome = run_handlers(accepted, handlers=[store])
    assert outcome.unhandled and outcome.ran == ["workers.unhandled.record_unhandled"]
    assert outcome.skipped == [NAME % "store"] and RAN == []
    # A "*" handler serves it, so it is not unhandled; dotted names work as well as functions.
    outcome = run_handlers(accepted, handlers=[NAME % "store", trail])
    assert outcome.ran == [NAME % "trail"] and not outcome.unhandled


def test_an_audit_reaches_handlers_that_asked_for_audits(kit: None) -> None:
    task = make_task(load_fixture("categorization", "audit", "rejected"))
    outcome = run_handlers(task, handlers=[reviews, store])
    assert outcome.ran == [NAME % "reviews"] and RAN == ["reviews:rejected"]


def test_a_type_nobody_serves_goes_to_the_fallback(kit: None) -> None:
    registry.clear()
    outcome = run_handlers(load_fixture("lidarannotation", "recalled"))
    assert outcome == Outcome(ran=["workers.unhandled.record_unhandled"], skipped=[], failed={}, unhandled=True)


@pytest.mark.parametrize(
    ("handlers", "message"),
    [
        ([print], "not registered: builtins.print; decorate it with @handles(...)"),
        (["tests.workers.test_testing.nope"], "not registered: tests.workers.test_testing.nope"),
        (["no_such_module_xyz.handler"], "cannot import 'no_such_module_xyz'"),
        (["handler"], "'handler' is not a dotted name"),
        ([42], "a handler is a decorated function or its dotted name, got 42"),
    ],
)
def test_handlers_that_are_not_registered_are_refused(kit: None, handlers: list[object], message: str) -> None:
    with pytest.raises(HandlerRegistrationError) as caught:
        run_handlers(load_fixture("imageannotation"), handlers=handlers)  # type: ignore[arg-type]
    assert message in caught.value.message


def test_the_probe_is_never_a_handlers(kit: None) -> None:
    body = load_fixture("categorization")
    body["task"]["type"] = "scb_probe"
    with pytest.raises(InvalidCallbackError, match="doctor's probe"):
        run_handlers(body)


# --- the README's example, run as a handler author would ----------------------------------------


def readme_section() -> str:
    """README's "Testing your handlers" section."""
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Testing your handlers\n", 1)[1].split("\n## ", 1)[0]


def readme_example_files() -> dict[str, str]:
    """The code blocks of README's "Testing your handlers" whose first line names their file."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", readme_section(), flags=re.S):
        first, _, _ = block.partition("\n")
        match = re.fullmatch(r"# ([\w/]+\.py)", first)
        if match:
            files[match.group(1)] = block
    return files


def test_the_readme_example_passes_from_a_package_outside_the_repository(tmp_path: Path) -> None:
    assert ROOT not in tmp_path.parents  # a package of the author's own, outside the repository
    files = readme_example_files()
    assert len(files) >= 2 and any(name.startswith("tests/") for name in files)
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    command = re.search(r"```sh\n(python -m pytest[^\n]*)\n```", readme_section()).group(1)  # type: ignore[union-attr]
    assert command.split()[:3] == ["python", "-m", "pytest"]
    done = subprocess.run(
        [sys.executable, *command.split()[1:], "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b[3-9] passed\b", done.stdout), done.stdout[-2000:]


# --- package data ---------------------------------------------------------------------------------


def test_the_built_package_ships_the_fixtures(tmp_path: Path) -> None:
    """A wheel of the project (what `pip install` of it makes) has every recorded callback in it."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("callback_server", "workers", "scale_sim"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {name for name in names if name.startswith("workers/fixtures/") and name.endswith(".json")}
    assert len(shipped) == len(list((ROOT / "workers" / "fixtures").glob("*/*.json"))) == 14 * 8
    assert "workers/testing.py" in names
    # Installed from that wheel alone, outside the repository, load_fixture reads its own copy.
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    script = (
        "import workers.testing as t\n"
        f"assert t.__file__.startswith({str(target)!r}), t.__file__\n"
        "print(t.load_fixture('lidarannotation', 'audit', 'commented')['task']['type'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "lidarannotation", done.stderr[-3000:]

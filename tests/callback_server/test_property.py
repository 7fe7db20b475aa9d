"""Property: whatever JSON value lands in whatever field of a valid body, an authenticated POST is
answered 200 (queued, duplicate or quarantined), never 500, and every queued job is processed
by a worker (with the example handlers) without an error."""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any

import pytest
import redis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from callback_server import schemas
from callback_server.schemas import _ENVELOPE, _RESPONSES, FAST_RESPONSES, REFERENCE_TYPES, fast_envelope
from tests.support.events import callback, categorization_life, error_callback
from tests.support.fixtures import load_fixture
from tests.support.keys import LIVE_KEY

EXAMPLES = 40
"""Examples per body: bounded so the suite stays fast; derandomized so CI sees the same ones."""

MODERN = {
    "imageannotation": {
        "annotations": [
            {
                "type": "box",
                "label": "car",
                "uuid": "u",
                "attributes": {},
                "left": 1,
                "top": 2,
                "width": 3,
                "height": 4,
            },
            {"type": "polygon", "label": "road", "vertices": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]},
            {"type": "point", "label": "eye", "x": 1, "y": 2},
        ],
        "global_attributes": {"weather": "rain"},
    },
    "textcollection": {"annotations": {"title": "A"}},
    "namedentityrecognition": {
        "annotations": [{"id": "e", "start": 0, "end": 1, "text": "P", "label": "city"}],
        "relationships": [{"id": "r", "source_ref": "e", "target_ref": "e", "name": "n"}],
    },
    "documenttranscription": {"annotations": [{"uuid": "d", "page": 1, "label": "l", "text": "t", "location": {}}]},
    "videoannotation": {"annotations": {"url": "https://example.com/a.json"}},
}


def _modern(task_type: str) -> dict[str, Any]:
    task = copy.deepcopy(load_fixture("categorization")["task"])
    task.update(type=task_type, params={}, response=MODERN[task_type])
    return callback(task)


BODIES: dict[str, dict[str, Any]] = {
    **{name: load_fixture(name) for name in REFERENCE_TYPES},
    **{name: _modern(name) for name in MODERN},
    "error": error_callback("annotation"),
    **{name.replace(" ", "_"): body for name, body in categorization_life()[1:5]},
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a body a value can be put: each existing field and item, and a new key per object."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        found.append((*prefix, "new_field"))
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found.extend(_paths(item, (*prefix, index)))
    return found


def _put(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=12)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=8,
)
"""Any JSON value, strings with lone surrogates and control characters included."""


@pytest.mark.parametrize("name", list(BODIES))
def test_any_value_in_any_field_is_answered_200_and_queued_jobs_run_cleanly(
    app: Flask, redis_conn: redis.Redis, name: str
) -> None:
    importlib.import_module("workers.handlers")
    body = BODIES[name]
    client = app.test_client()
    answers: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(path=st.sampled_from(_paths(body)), value=JSON_VALUES)
    def post_one(path: tuple[Any, ...], value: Any) -> None:
        data = json.dumps(_put(body, path, value))  # ensure_ascii: a lone surrogate travels as \ud800
        response = client.post(
            "/callback", data=data, headers={"scale-callback-auth": LIVE_KEY}, content_type="application/json"
        )
        assert response.status_code == 200, (path, value, response.get_data())
        status = response.get_json()["status"]
        assert status in ("queued", "duplicate", "quarantined")
        answers[status] = answers.get(status, 0) + 1

    post_one()
    assert answers.get("queued", 0) + answers.get("quarantined", 0) > 0, answers
    queue = Queue("callbacks", connection=redis_conn, serializer=JSONSerializer)
    queued = queue.count
    SimpleWorker([queue], connection=redis_conn, serializer=JSONSerializer).work(burst=True)
    assert queue.count == 0
    failed = FailedJobRegistry(queue=queue)
    scheduled = ScheduledJobRegistry(queue=queue)
    stuck = [*failed.get_job_ids(), *scheduled.get_job_ids()]
    problems = {job_id: queue.fetch_job(job_id).exc_info for job_id in stuck}
    assert problems == {}, f"{len(problems)} of {queued} jobs failed: {next(iter(problems.values()), '')}"


@pytest.mark.parametrize("name", list(BODIES))
def test_the_fast_checks_never_accept_what_the_schemas_refuse(name: str) -> None:
    """fast_envelope and FAST_RESPONSES skip marshmallow on the ack path: they may say "ask marshmallow"
    for a valid body, never "valid" for an invalid one."""
    body = BODIES[name]
    agreed: dict[str, int] = {}

    @settings(max_examples=150, derandomize=True, deadline=None, database=None)
    @given(path=st.sampled_from(_paths(body)), value=JSON_VALUES)
    def check(path: tuple[Any, ...], value: Any) -> None:
        changed = _put(body, path, value)
        if fast_envelope(changed):
            assert _ENVELOPE.validate(changed) == {}, (path, value)
            agreed["envelope"] = agreed.get("envelope", 0) + 1
        response = changed.get("response")
        task = changed.get("task")
        task_type = task.get("type") if isinstance(task, dict) else None
        fast = FAST_RESPONSES.get(task_type) if isinstance(task_type, str) else None
        if fast is not None and isinstance(response, dict) and fast(response):
            assert _RESPONSES[task_type].validate(response) == {}, (path, value)

    check()
    assert agreed.get("envelope", 0) > 0  # the property was exercised on bodies the fast check accepts


@pytest.mark.parametrize("name", [*REFERENCE_TYPES, "categorization_multiple", "audiotranscription_error"])
def test_recorded_callbacks_take_the_fast_path(name: str) -> None:
    body = load_fixture(name)
    assert fast_envelope(body)
    fast = FAST_RESPONSES.get(body["task"]["type"])
    assert fast is None or fast(body["response"])


_ITEM_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), st.lists(st.integers(), max_size=2)
)
_BOX_LIKE = st.fixed_dictionaries(
    {},
    optional={
        name: _ITEM_VALUES for name in ("left", "top", "width", "height", "x", "y", "label", "uuid", "attributes")
    },
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(item=_BOX_LIKE, shape=st.sampled_from([None, "box", "polygon", "line", "point"]), vertices=st.lists(_BOX_LIKE))
def test_the_fast_item_checks_never_accept_what_the_item_schemas_refuse(
    item: dict[str, Any], shape: str | None, vertices: list[dict[str, Any]]
) -> None:
    """ListOf skips marshmallow for items its fast predicate accepts: each must agree with its schema."""
    if schemas._fast_box(item):
        assert schemas.BoxSchema().validate(item) == {}, item
    geometry = {**item, "vertices": vertices, **({"type": shape} if shape else {})}
    if schemas._fast_geometry(geometry):
        assert schemas.GeometrySchema().validate(geometry) == {}, geometry

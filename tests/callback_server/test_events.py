"""Events: which event each body is, that each is a new delivery, and that identity ignores how it came."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from callback_server.deliveries import delivery_id
from callback_server.events import AUDIT, CANCELED, COMPLETED, ERROR, RECALLED, Event, UnknownStatusError, derive_event
from callback_server.schemas import validate_callback
from callback_server.times import parse_instant
from tests.support.events import callback, categorization_life, error_callback
from tests.support.fixtures import FIXTURES, load_fixture
from tests.support.http import post
from tests.support.jobs import queued_jobs

EVENT_FIXTURES = sorted((FIXTURES / "events").glob("*.json"))

EXPECTED = {
    "completed": Event(COMPLETED),
    "audit accepted": Event(AUDIT, "accepted"),
    "audit fixed": Event(AUDIT, "fixed"),
    "audit rejected": Event(AUDIT, "rejected"),
    "recalled": Event(RECALLED),
    "completed again": Event(COMPLETED),
}


@pytest.mark.parametrize(("name", "body"), categorization_life(), ids=[name for name, _ in categorization_life()])
def test_each_state_of_a_life_is_its_event(name: str, body: dict[str, Any]) -> None:
    assert derive_event(body["task"]) == EXPECTED[name]
    assert validate_callback(body) == {}


def test_error_and_canceled_events() -> None:
    assert derive_event(error_callback()["task"]) == Event(ERROR)
    assert derive_event({"status": "canceled"}) == Event(CANCELED)
    with pytest.raises(UnknownStatusError, match="in_progress"):
        derive_event({"status": "in_progress"})


def test_an_audit_before_the_completion_is_no_audit_event() -> None:
    """After a recall and a new completion, the old audits stay in the list; the event is the completion."""
    task = categorization_life()[-1][1]["task"]
    assert task["audits"]
    assert derive_event(task) == Event(COMPLETED)


def test_an_audit_without_a_result_takes_the_review_status() -> None:
    task = {
        "status": "completed",
        "completed_at": "2020-01-01T00:00:00Z",
        "audits": [{"audited_at": "2020-01-02T00:00:00Z"}],
        "customer_review_status": "commented",
    }
    assert derive_event(task) == Event(AUDIT, "commented")


def test_only_completions_and_fixed_audits_carry_results() -> None:
    assert [e.carries_result for e in EXPECTED.values()] == [True, False, True, False, False, True]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-9-03T07:38:32.368Z", "2016-09-03T07:38:32.368000+00:00"),
        ("2016-06-23T21:54:44.904Z", "2016-06-23T21:54:44.904000+00:00"),
        ("2016-06-23T23:54:44.904+02:00", "2016-06-23T21:54:44.904000+00:00"),
        ("2016-06-23T21:54:44", "2016-06-23T21:54:44+00:00"),
        ("2016-06-23 21:54:44Z", "2016-06-23T21:54:44+00:00"),
        ("2016-06-23", "2016-06-23T00:00:00+00:00"),
        ("2016-06-3", "2016-06-03T00:00:00+00:00"),
        ("2016-06-3T21:54:44Z", "2016-06-03T21:54:44+00:00"),
        ("2016-\u0660\u0666-\u0662\u0663T21:54:44Z", "2016-06-23T21:54:44+00:00"),  # Arabic-Indic digits
        ("2016-06-234", None),
        ("yesterday", None),
        ("0001-01-01T00:00:00+14:00", None),
        ("", None),
        (12, None),
        ("9" * 100, None),
    ],
)
def test_parse_instant_is_lenient_and_never_raises(text: Any, expected: str | None) -> None:
    moment = parse_instant(text)
    assert (moment.isoformat() if moment else None) == expected


# --- identity -------------------------------------------------------------------------------------


def test_every_state_of_a_life_has_its_own_identity() -> None:
    ids = [delivery_id(body) for _, body in categorization_life()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("name", "identity"),
    [
        # Computed by the release before events (commit a09ea92).
        ("categorization", "5ea5fb0fc2a526b486e7e45025afae5c"),
        ("annotation", "0de82a618a71d010b4163ec628a440ba"),
        ("audiotranscription_error", "34a359dc96bb3eef897e17e1eea73aef"),
        ("categorization_multiple", "6d922d7764147f829dabccb2df7a9bd4"),
    ],
)
def test_a_completed_task_without_audits_keeps_the_identity_it_had_before_events(name: str, identity: str) -> None:
    """An upgrade in the middle of Scale's retries must answer duplicate, not queue a result twice."""
    body = load_fixture(name)
    assert delivery_id(body) == identity
    body["task"].update(audits=[], customer_review_status="pending", updated_at="2030-01-01T00:00:00Z")
    body["status"] = "completed"
    assert delivery_id(body) == identity


def test_fields_that_move_without_an_event_stay_out_of_the_identity() -> None:
    _, body = categorization_life()[1]
    moved = copy.deepcopy(body)
    moved["task"].update(updated_at="2031-01-01T00:00:00Z", callback_completed=True, callback_succeeded=True)
    assert delivery_id(moved) == delivery_id(body)


@pytest.mark.parametrize(("name", "body"), categorization_life(), ids=[name for name, _ in categorization_life()])
def test_identity_is_the_same_from_the_callback_and_from_the_list_api(name: str, body: dict[str, Any]) -> None:
    """The reconciler builds the envelope from the task the list API returns; it must be the same delivery."""
    listed = copy.deepcopy(body["task"])
    listed.update(updated_at="2040-01-01T00:00:00.000Z", callback_completed=False)
    if listed.get("completed_at"):  # the API may print the same instant another way
        listed["completed_at"] = parse_instant(listed["completed_at"]).isoformat()  # type: ignore[union-attr]
    assert delivery_id(callback(listed)) == delivery_id(body)


# --- over HTTP -------------------------------------------------------------------------------------


def test_a_whole_life_is_six_deliveries_and_each_retry_a_duplicate(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    for _, body in categorization_life():
        assert post(client, body).get_json() == {"status": "queued"}
        assert post(client, json.dumps(body, indent=2)).get_json() == {"status": "duplicate"}
    jobs = queued_jobs(redis_conn)
    assert [(job.args[0]["event"], job.args[0]["review_status"]) for job in jobs] == [
        (e.name, e.review_status) for e in EXPECTED.values()
    ]


def test_error_at_creation_is_queued_and_carries_its_event(client: FlaskClient, redis_conn: redis.Redis) -> None:
    for name in ("categorization", "annotation", "audiotranscription"):
        assert post(client, error_callback(name)).get_json() == {"status": "queued"}, name
    assert {job.args[0]["event"] for job in queued_jobs(redis_conn)} == {"error"}


def test_a_recall_with_no_response_key_in_the_task_is_queued(client: FlaskClient, redis_conn: redis.Redis) -> None:
    task = copy.deepcopy(load_fixture("annotation")["task"])
    task.pop("response")
    task["status"] = "pending"
    assert post(client, callback(task)).get_json() == {"status": "queued"}


def test_today_categorization_with_taxonomies_is_queued(client: FlaskClient, redis_conn: redis.Redis) -> None:
    task = copy.deepcopy(load_fixture("categorization")["task"])
    colour = {"type": "category", "choices": ["red", "blue"], "allow_multiple": True}
    task["params"] = {"taxonomies": {"colour": colour}}
    task["response"] = {"taxonomies": {"colour": ["red", "blue"]}}
    assert post(client, callback(task)).get_json() == {"status": "queued"}


def test_a_malformed_created_at_is_kept_not_quarantined(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = load_fixture("categorization")
    body["task"]["created_at"] = "2016-9-03T07:38:32.368Z"
    body["task"]["updated_at"] = "not a time"
    assert post(client, body).get_json() == {"status": "queued"}
    (job,) = queued_jobs(redis_conn)
    assert job.args[0]["body"]["task"]["updated_at"] == "not a time"


def test_there_are_recorded_event_fixtures() -> None:
    assert len(EVENT_FIXTURES) >= 18, [p.name for p in EVENT_FIXTURES]


@pytest.mark.parametrize("path", EVENT_FIXTURES, ids=[p.stem for p in EVENT_FIXTURES])
def test_each_recorded_event_is_queued_once_with_its_event(
    client: FlaskClient, redis_conn: redis.Redis, path: Path
) -> None:
    body = json.loads(path.read_text())
    assert post(client, body).get_json() == {"status": "queued"}
    assert post(client, body).get_json() == {"status": "duplicate"}
    (job,) = queued_jobs(redis_conn)
    event = path.stem.split("_", 1)[1]
    assert job.args[0]["event"] == event.split("_")[0]
    if event.startswith("audit_"):
        assert job.args[0]["review_status"] == event.split("_")[1]

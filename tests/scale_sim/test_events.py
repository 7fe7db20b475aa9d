"""Every event a task goes through (error at creation, audits, recall, completion again), each with its callback.

The bodies the simulator sends are checked against the receiver's contract (support.assert_event_body).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from scale_sim import create_app
from scale_sim.config import Secret, SimSettings
from scale_sim.delivery import AUTH_HEADER
from scale_sim.simulator import Simulator
from tests.support.events import assert_event_body
from tests.support.keys import API_LIVE_KEY, API_OTHER_TEST_KEY, API_TEST_KEY, CALLBACK_KEY
from tests.support.processes import wait_for
from tests.support.receiver import Receiver
from tests.support.tasks import basic_auth, json_body

TEST_CALLBACK_KEY = "sim-test-mode-callback-key-for-tests"


def api(client: FlaskClient, path: str, key: str = API_TEST_KEY, **body: Any) -> Any:
    answer = client.post(f"/v1/{path}", json=body, headers=basic_auth(key))
    return answer.get_json(), answer.status_code


def create(
    client: FlaskClient, url: str, task_type: str = "categorization", key: str = API_TEST_KEY, **extra: Any
) -> str:
    task, status = api(client, f"task/{task_type}", key, **{**json_body(url, task_type), **extra})
    assert status == 200, task
    task_id: str = task["task_id"]
    return task_id


def completed(client: FlaskClient, sim: Simulator, url: str, **extra: Any) -> str:
    task_id = create(client, url, **extra)
    _, status = api(client, f"task/{task_id}/complete", response={"category": "public"})
    assert status == 200
    return task_id


def bodies(receiver: Receiver, sim: Simulator, task_id: str) -> list[dict[str, Any]]:
    sim.run_pending()
    return [r.body for r in receiver.for_task(task_id) if r.body is not None]


def get(client: FlaskClient, task_id: str, key: str = API_TEST_KEY) -> dict[str, Any]:
    task: dict[str, Any] = client.get(f"/v1/task/{task_id}", headers=basic_auth(key)).get_json()
    return task


@pytest.fixture
def auto_sim(make_settings: Callable[..., SimSettings]) -> Iterator[tuple[FlaskClient, Simulator]]:
    """A test client and its simulator whose tasks complete (or fail) at the next run_pending()."""
    app = create_app(make_settings(completion_delay=0.0))
    sim: Simulator = app.extensions["scale_sim"]
    yield app.test_client(), sim
    sim.close()


# -- error at creation ---------------------------------------------------------------------------------


def test_an_attachment_url_with_sim_error_fails_the_task_at_creation(
    auto_sim: tuple[FlaskClient, Simulator], receiver: Receiver
) -> None:
    client, sim = auto_sim
    bad = "https://example.com/sim-error/forbidden.jpg"
    task_id = create(client, receiver.url, "categorization", attachment_type="image", attachment=bad)
    [body] = bodies(receiver, sim, task_id)
    assert_event_body(body, "error")
    assert body["response"] == {
        "error": "One or more attachments could not be fetched (HTTP 403 Forbidden)",
        "attachments": [{"statusCode": 403, "url": bad}],
    }
    task = get(client, task_id)
    assert task["status"] == "error" and "completed_at" not in task
    assert task["updated_at"] > task["created_at"] or task["updated_at"] == task["created_at"]


def test_the_error_fault_fails_video_tasks_with_frames(
    auto_sim: tuple[FlaskClient, Simulator], receiver: Receiver
) -> None:
    client, sim = auto_sim
    task_id = create(client, receiver.url, "videoannotation", metadata={"sim_faults": ["error"]})
    [body] = bodies(receiver, sim, task_id)
    assert_event_body(body, "error")
    frames = json_body(receiver.url, "videoannotation")["attachments"]
    assert body["response"]["frames"] == [{"statusCode": 403, "url": url} for url in frames]
    assert sim.faults_for(task_id).describe() == ["error"]


def test_fail_a_pending_task_by_hand_with_a_message(client: FlaskClient, sim: Simulator, receiver: Receiver) -> None:
    task_id = create(client, receiver.url, "imageannotation")
    task, status = api(client, f"task/{task_id}/error", message="Image could not be decoded")
    assert status == 200 and task["status"] == "error"
    [body] = bodies(receiver, sim, task_id)
    assert_event_body(body, "error")
    assert body["response"]["error"] == "Image could not be decoded"
    assert body["response"]["attachments"] == [{"statusCode": 403, "url": task["params"]["attachment"]}]


@pytest.mark.parametrize(
    ("setup", "body", "status", "message"),
    [
        ("completed", {}, 400, "only a pending task that never completed"),
        ("pending", {"message": 5}, 400, "'message'"),
        ("pending", {"message": ""}, 400, "'message'"),
        ("other_account", {}, 404, "No task"),
    ],
)
def test_error_endpoint_bad_input(
    client: FlaskClient, sim: Simulator, setup: str, body: dict[str, Any], status: int, message: str
) -> None:
    url = "http://127.0.0.1:9/cb"
    task_id = completed(client, sim, url) if setup == "completed" else create(client, url)
    answer, code = api(
        client, f"task/{task_id}/error", API_OTHER_TEST_KEY if setup == "other_account" else API_TEST_KEY, **body
    )
    assert code == status and message in answer["error"]


# -- audits --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("result", ["accepted", "rejected", "commented"])
def test_an_audit_that_keeps_the_response(client: FlaskClient, sim: Simulator, receiver: Receiver, result: str) -> None:
    task_id = completed(client, sim, receiver.url)
    before = get(client, task_id)
    task, status = api(client, f"task/{task_id}/audit", result=result, source="scale")
    assert status == 200
    assert task["response"] == before["response"] and task["completed_at"] == before["completed_at"]
    assert task["customer_review_status"] == result
    assert task["updated_at"] > before["updated_at"]
    [audit] = task["audits"]
    assert audit["audit_result"] == result and audit["audit_source"] == "scale"
    assert audit["audited_by"] == "reviewer@scale.example.com" and audit["audited_at"] == task["updated_at"]
    first, second = bodies(receiver, sim, task_id)
    assert_event_body(first, "completed")
    assert_event_body(second, f"audit_{result}")
    assert second["task"]["audits"] == task["audits"]


def test_a_fixed_audit_replaces_the_response(client: FlaskClient, sim: Simulator, receiver: Receiver) -> None:
    task_id = completed(client, sim, receiver.url)
    fixed = {"category": "private"}
    task, _ = api(
        client, f"task/{task_id}/audit", result="fixed", response=fixed, audited_by="me@example.com", audit_time_secs=42
    )
    assert task["response"] == fixed and task["audits"][0]["audited_by"] == "me@example.com"
    assert task["audits"][0]["audit_time_secs"] == 42
    body = bodies(receiver, sim, task_id)[-1]
    assert_event_body(body, "audit_fixed")
    assert body["response"] == body["task"]["response"] == fixed


def test_a_fixed_audit_without_a_response_gets_a_new_one_of_the_types_shape(
    auto_sim: tuple[FlaskClient, Simulator], receiver: Receiver
) -> None:
    client, sim = auto_sim
    task_id = create(client, receiver.url, "imageannotation")
    sim.run_pending()
    original = get(client, task_id)["response"]
    task, _ = api(client, f"task/{task_id}/audit", result="fixed")
    assert task["response"] != original
    assert {a["type"] for a in task["response"]["annotations"]} == {"box", "polygon"}
    assert_event_body(bodies(receiver, sim, task_id)[-1], "audit_fixed")


@pytest.mark.parametrize(
    ("setup", "body", "status", "message"),
    [
        ("pending", {"result": "accepted"}, 400, "only completed tasks can be audited"),
        ("completed", {}, 400, "Missing required parameter: result"),
        ("completed", {"result": "approved"}, 400, "'result': must be one of accepted, fixed, rejected, commented"),
        ("completed", {"result": "accepted", "source": "robot"}, 400, "'source'"),
        ("completed", {"result": "accepted", "response": {"category": "x"}}, 400, "only a fixed audit"),
        ("completed", {"result": "fixed", "response": [1]}, 400, "'response': must be a JSON object"),
        ("completed", {"result": "accepted", "audit_time_secs": -1}, 400, "'audit_time_secs'"),
        ("completed", {"result": "accepted", "audit_time_secs": True}, 400, "'audit_time_secs'"),
        ("other_account", {"result": "accepted"}, 404, "No task"),
    ],
)
def test_audit_bad_input(
    client: FlaskClient, sim: Simulator, setup: str, body: dict[str, Any], status: int, message: str
) -> None:
    url = "http://127.0.0.1:9/cb"
    task_id = create(client, url) if setup == "pending" else completed(client, sim, url)
    answer, code = api(
        client, f"task/{task_id}/audit", API_OTHER_TEST_KEY if setup == "other_account" else API_TEST_KEY, **body
    )
    assert code == status and message in answer["error"]
    if setup == "completed":
        assert get(client, task_id)["audits"] == []


# -- recall and completion again -----------------------------------------------------------------------


def test_a_tasks_whole_life_sends_one_callback_per_event(
    client: FlaskClient, sim: Simulator, receiver: Receiver
) -> None:
    """completed, accepted, fixed, rejected, recalled, completed again: six callbacks, each its own state."""
    task_id = completed(client, sim, receiver.url)
    api(client, f"task/{task_id}/audit", result="accepted")
    api(client, f"task/{task_id}/audit", result="fixed")
    api(client, f"task/{task_id}/audit", result="rejected")
    recalled, status = api(client, f"task/{task_id}/recall", complete_in=None)
    assert status == 200
    assert recalled["status"] == "pending" and recalled["response"] is None
    sim.run_pending()  # the recall callback goes out; nothing completes by itself (complete_in null)
    assert get(client, task_id)["status"] == "pending"
    again, _ = api(client, f"task/{task_id}/complete", response={"category": "private"})
    got = bodies(receiver, sim, task_id)
    events = ["completed", "audit_accepted", "audit_fixed", "audit_rejected", "recalled", "completed"]
    assert len(got) == len(events)
    for body, event in zip(got, events, strict=True):
        assert_event_body(body, event)
    first_completion = got[0]["task"]["completed_at"]
    assert got[4]["task"]["completed_at"] == first_completion  # a recall keeps the completion it recalls
    assert got[5]["task"]["completed_at"] == again["completed_at"] > got[3]["task"]["updated_at"]
    assert len(got[5]["task"]["audits"]) == 3 and got[5]["response"] == {"category": "private"}
    assert len({b["task"]["updated_at"] for b in got}) == 6
    log = client.get(f"/v1/task/{task_id}/deliveries", headers=basic_auth(API_TEST_KEY)).get_json()
    assert [d["event"] for d in log["deliveries"]] == [
        "completed",
        "audit_accepted",
        "audit_fixed",
        "audit_rejected",
        "recalled",
        "completed",
    ]
    assert log["callback_succeeded"] is True


def test_a_recalled_task_completes_again_by_itself(auto_sim: tuple[FlaskClient, Simulator], receiver: Receiver) -> None:
    client, sim = auto_sim
    task_id = create(client, receiver.url, "textcollection")
    sim.run_pending()
    first = get(client, task_id)
    api(client, f"task/{task_id}/recall")
    got = bodies(receiver, sim, task_id)
    assert sorted(b["status"] for b in got) == ["completed", "completed", "pending"]
    [recall] = [b for b in got if b["status"] == "pending"]
    assert_event_body(recall, "recalled")
    again = max((b for b in got if b["status"] == "completed"), key=lambda b: b["task"]["completed_at"])
    assert_event_body(again, "completed")
    assert again["task"]["completed_at"] > first["completed_at"]
    assert set(again["response"]["annotations"]) == set(first["response"]["annotations"])


@pytest.mark.parametrize(
    ("setup", "body", "status", "message"),
    [
        ("pending", {}, 400, "only completed tasks can be recalled"),
        ("completed", {"complete_in": "soon"}, 400, "'complete_in'"),
        ("completed", {"complete_in": -5}, 400, "'complete_in'"),
        ("other_account", {}, 404, "No task"),
    ],
)
def test_recall_bad_input(
    client: FlaskClient, sim: Simulator, setup: str, body: dict[str, Any], status: int, message: str
) -> None:
    url = "http://127.0.0.1:9/cb"
    task_id = create(client, url) if setup == "pending" else completed(client, sim, url)
    answer, code = api(
        client, f"task/{task_id}/recall", API_OTHER_TEST_KEY if setup == "other_account" else API_TEST_KEY, **body
    )
    assert code == status and message in answer["error"]


def test_a_canceled_task_moves_updated_at(client: FlaskClient) -> None:
    task_id = create(client, "http://127.0.0.1:9/cb")
    before = get(client, task_id)
    task, _ = api(client, f"task/{task_id}/cancel")
    assert task["status"] == "canceled" and task["updated_at"] > before["updated_at"]


# -- delivery machinery applies to every event ---------------------------------------------------------


def test_event_callbacks_go_through_the_tasks_faults(client: FlaskClient, sim: Simulator, receiver: Receiver) -> None:
    task_id = completed(client, sim, receiver.url, metadata={"sim_faults": ["duplicate=2", "wrong_key"]})
    api(client, f"task/{task_id}/audit", result="accepted")
    got = bodies(receiver, sim, task_id)
    assert [b["status"] for b in got].count("completed") == 4  # two copies of each event
    assert all(r.headers[AUTH_HEADER.title()] != CALLBACK_KEY for r in receiver.for_task(task_id))
    dropped = completed(client, sim, receiver.url, metadata={"sim_faults": ["drop"]})
    api(client, f"task/{dropped}/audit", result="rejected")
    assert bodies(receiver, sim, dropped) == []
    log = client.get(f"/v1/task/{dropped}/deliveries", headers=basic_auth(API_TEST_KEY)).get_json()
    assert [(d["event"], d["state"]) for d in log["deliveries"]] == [
        ("completed", "dropped"),
        ("audit_rejected", "dropped"),
    ]


def test_a_retried_event_keeps_its_own_body_after_a_later_event(
    client: FlaskClient, sim: Simulator, receiver: Receiver
) -> None:
    """A completion callback still being retried when an audit happens goes on carrying the completion."""
    task_id = create(client, receiver.url)
    receiver.respond_with(503)
    api(client, f"task/{task_id}/complete", response={"category": "public"})
    sim.run_pending()  # the first try fails; the retry is due a millisecond later (time scale 0.0001)
    api(client, f"task/{task_id}/audit", result="accepted")

    def three() -> list[dict[str, Any]] | None:
        found = bodies(receiver, sim, task_id)
        return found if len(found) >= 3 else None

    got = wait_for(three, what="the retry and the audit")
    assert len(got) == 3
    retried = [b for b in got if not b["task"]["audits"]]
    assert len(retried) == 2 and retried[0] == retried[1]
    assert_event_body(retried[1], "completed")


@pytest.mark.parametrize(
    ("key", "expected", "is_test"), [(API_TEST_KEY, TEST_CALLBACK_KEY, True), (API_LIVE_KEY, CALLBACK_KEY, False)]
)
def test_test_tasks_call_back_with_the_test_key(
    make_settings: Callable[..., SimSettings], receiver: Receiver, key: str, expected: str, is_test: bool
) -> None:
    app: Flask = create_app(make_settings(completion_delay=0.0, test_callback_auth_key=Secret(TEST_CALLBACK_KEY)))
    sim: Simulator = app.extensions["scale_sim"]
    try:
        task_id = create(app.test_client(), receiver.url, key=key)
        sim.run_pending()
        [callback] = receiver.for_task(task_id)
        assert callback.headers[AUTH_HEADER.title()] == expected
        assert callback.body is not None and callback.body["task"]["is_test"] is is_test
    finally:
        sim.close()


def test_without_a_test_key_test_tasks_use_the_callback_key(
    client: FlaskClient, sim: Simulator, receiver: Receiver
) -> None:
    task_id = completed(client, sim, receiver.url)
    sim.run_pending()
    assert receiver.for_task(task_id)[0].headers[AUTH_HEADER.title()] == CALLBACK_KEY


def test_the_test_callback_key_is_read_from_the_environment() -> None:
    settings = SimSettings.from_env({"SCALE_SIM_TEST_CALLBACK_AUTH_KEY": " k-test "})
    assert settings.test_callback_auth_key.reveal() == "k-test"
    assert "k-test" not in repr(settings)

"""The API over Flask's test client: auth, create (form, JSON, brackets), retrieve, cancel, extensions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from scale_sim import create_app
from scale_sim.config import SimSettings
from scale_sim.simulator import Simulator
from scale_sim.validation import REFERENCE_TYPES
from tests.support.keys import API_LIVE_KEY, API_OTHER_TEST_KEY, API_TEST_KEY
from tests.support.tasks import FORM, basic_auth, curl_data, json_body, reference_bodies

CB = "http://www.example.com/callback"
TASK_ID = re.compile(r"^[0-9a-f]{24}$")
CREATED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def create(
    client: FlaskClient, task_type: str = "categorization", key: str = API_TEST_KEY, **extra: Any
) -> TestResponse:
    return client.post(f"/v1/task/{task_type}", json={**json_body(CB, task_type), **extra}, headers=basic_auth(key))


def assert_error(answer: TestResponse, status: int, contains: str = "") -> None:
    assert answer.status_code == status, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["status_code"] == status
    assert contains in body["error"]


# -- authentication --------------------------------------------------------------------------------------


def test_no_key_is_401_in_scales_error_shape(client: FlaskClient) -> None:
    answer = client.get("/v1/tasks")
    assert_error(answer, 401)
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("key", ["sk_live_123", "TEST_abc", "prod_key", "test-abc"])
def test_keys_that_are_not_test_or_live_are_401(client: FlaskClient, key: str) -> None:
    assert_error(client.get("/v1/tasks", headers=basic_auth(key)), 401, "test_ or live_")


def test_a_bearer_token_is_not_basic_auth(client: FlaskClient) -> None:
    assert_error(client.get("/v1/tasks", headers={"Authorization": f"Bearer {API_TEST_KEY}"}), 401)


def test_test_keys_make_test_tasks_and_live_keys_do_not(client: FlaskClient) -> None:
    assert create(client, key=API_TEST_KEY).get_json()["is_test"] is True
    assert create(client, key=API_LIVE_KEY).get_json()["is_test"] is False


# -- create ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", REFERENCE_TYPES)
def test_create_from_the_reference_curl_example(client: FlaskClient, task_type: str) -> None:
    answer = client.post(
        f"/v1/task/{task_type}",
        data=curl_data(reference_bodies(CB)[task_type]),
        content_type=FORM,
        headers=basic_auth(API_TEST_KEY),
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    task = answer.get_json()
    assert TASK_ID.match(task["task_id"])
    assert CREATED_AT.match(task["created_at"])
    assert task["type"] == task_type
    assert task["status"] == "pending"
    assert task["urgency"] == "day"
    assert task["metadata"] == {}
    assert task["callback_url"] == CB
    assert "response" not in task and "completed_at" not in task and "callback_succeeded" not in task


def test_created_task_matches_the_reference_layout(client: FlaskClient) -> None:
    task = client.post(
        "/v1/task/categorize",
        data=curl_data(reference_bodies(CB)["categorization"]),
        content_type=FORM,
        headers=basic_auth(API_TEST_KEY),
    ).get_json()
    assert list(task) == [
        "task_id",
        "created_at",
        "callback_url",
        "type",
        "status",
        "instruction",
        "urgency",
        "params",
        "metadata",
        "is_test",
        "project",
        "batch",
        "unique_id",
        "tags",
        "updated_at",
        "audits",
        "customer_review_status",
        "callback_completed",
    ]
    assert task["params"] == {
        "attachment_type": "website",
        "attachment": "http://www.google.com/",
        "categories": ["public", "private"],
    }


def test_phonecall_script_is_a_top_level_attribute(client: FlaskClient) -> None:
    task = client.post(
        "/v1/task/phonecall",
        data=curl_data(reference_bodies(CB)["phonecall"]),
        content_type=FORM,
        headers=basic_auth(API_TEST_KEY),
    )
    body = task.get_json()
    assert body["script"].startswith("Hello")
    assert "script" not in body["params"]


def test_create_with_json(client: FlaskClient) -> None:
    answer = create(client, "annotation", metadata={"video_id": "v1"}, urgency="week")
    task = answer.get_json()
    assert task["urgency"] == "week"
    assert task["metadata"] == {"video_id": "v1"}
    assert task["params"]["examples"][0] == {
        "correct": False,
        "image": "http://i.imgur.com/lj6e98s.jpg",
        "explanation": "tight",
    }


def test_a_missing_parameter_is_400_naming_it(client: FlaskClient) -> None:
    body = json_body(CB, "categorization")
    del body["categories"]
    answer = client.post("/v1/task/categorization", json=body, headers=basic_auth(API_TEST_KEY))
    assert_error(answer, 400, "categories")


def test_an_unknown_task_type_is_400(client: FlaskClient) -> None:
    answer = client.post("/v1/task/chatlite", json=json_body(CB, "annotation"), headers=basic_auth(API_TEST_KEY))
    assert_error(answer, 400, "not supported")


def test_a_body_that_is_not_json_is_400(client: FlaskClient) -> None:
    answer = client.post(
        "/v1/task/categorization", data="{nope", content_type="application/json", headers=basic_auth(API_TEST_KEY)
    )
    assert_error(answer, 400, "not valid JSON")


def test_a_json_array_body_is_400(client: FlaskClient) -> None:
    answer = client.post("/v1/task/categorization", json=["a"], headers=basic_auth(API_TEST_KEY))
    assert_error(answer, 400, "JSON object")


def test_an_unknown_fault_is_400_at_create(client: FlaskClient) -> None:
    assert_error(create(client, metadata={"sim_faults": ["meteor"]}), 400, "unknown fault 'meteor'")


def test_callback_url_is_required_without_a_default(client: FlaskClient) -> None:
    body = json_body(CB, "categorization")
    del body["callback_url"]
    assert_error(
        client.post("/v1/task/categorization", json=body, headers=basic_auth(API_TEST_KEY)), 400, "callback_url"
    )


def test_the_default_callback_url_fills_in(make_settings: Callable[..., SimSettings]) -> None:
    app = create_app(make_settings(default_callback_url="http://127.0.0.1:9/default", completion_delay=60.0))
    try:
        body = json_body(CB, "categorization")
        del body["callback_url"]
        answer = app.test_client().post("/v1/task/categorization", json=body, headers=basic_auth(API_TEST_KEY))
        assert answer.get_json()["callback_url"] == "http://127.0.0.1:9/default"
    finally:
        app.extensions["scale_sim"].close()


# -- retrieve and cancel ---------------------------------------------------------------------------------


def test_retrieve_a_task(client: FlaskClient) -> None:
    created = create(client).get_json()
    answer = client.get(f"/v1/task/{created['task_id']}", headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == 200
    assert answer.get_json() == created


def test_unknown_ids_are_404(client: FlaskClient) -> None:
    assert_error(client.get("/v1/task/000000000000000000000000", headers=basic_auth(API_TEST_KEY)), 404)
    assert_error(client.get("/v1/task/not-an-id", headers=basic_auth(API_TEST_KEY)), 404)


def test_another_accounts_task_is_404(client: FlaskClient) -> None:
    task_id = create(client).get_json()["task_id"]
    for key in (API_OTHER_TEST_KEY, API_LIVE_KEY):
        assert_error(client.get(f"/v1/task/{task_id}", headers=basic_auth(key)), 404)
        assert_error(client.post(f"/v1/task/{task_id}/cancel", headers=basic_auth(key)), 404)


def test_cancel_a_pending_task(client: FlaskClient) -> None:
    task_id = create(client).get_json()["task_id"]
    answer = client.post(f"/v1/task/{task_id}/cancel", headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "canceled"
    assert client.get(f"/v1/task/{task_id}", headers=basic_auth(API_TEST_KEY)).get_json()["status"] == "canceled"


def test_cancel_a_completed_task_is_500(client: FlaskClient, sim: Simulator) -> None:
    task_id = create(client).get_json()["task_id"]
    sim.complete_task(task_id, {"category": "public"})
    assert_error(client.post(f"/v1/task/{task_id}/cancel", headers=basic_auth(API_TEST_KEY)), 500, "completed")


def test_cancel_twice_is_500(client: FlaskClient) -> None:
    task_id = create(client).get_json()["task_id"]
    client.post(f"/v1/task/{task_id}/cancel", headers=basic_auth(API_TEST_KEY))
    assert_error(client.post(f"/v1/task/{task_id}/cancel", headers=basic_auth(API_TEST_KEY)), 500, "canceled")


def test_a_canceled_task_never_completes(client: FlaskClient, sim: Simulator) -> None:
    task_id = create(client).get_json()["task_id"]
    client.post(f"/v1/task/{task_id}/cancel", headers=basic_auth(API_TEST_KEY))
    assert sim.store.due_completions(now=10**12) == []


# -- sim extensions ----------------------------------------------------------------------------------------


def test_complete_by_hand(client: FlaskClient) -> None:
    task_id = create(client).get_json()["task_id"]
    answer = client.post(
        f"/v1/task/{task_id}/complete",
        json={"response": {"category": "private"}},
        headers=basic_auth(API_TEST_KEY),
    )
    assert answer.status_code == 200
    task = answer.get_json()
    assert task["status"] == "completed"
    assert task["response"] == {"category": "private"}
    assert CREATED_AT.match(task["completed_at"])


@pytest.mark.parametrize("body", [{}, {"response": "private"}, {"response": ["a"]}])
def test_complete_needs_a_response_object(client: FlaskClient, body: dict[str, Any]) -> None:
    task_id = create(client).get_json()["task_id"]
    assert_error(
        client.post(f"/v1/task/{task_id}/complete", json=body, headers=basic_auth(API_TEST_KEY)), 400, "response"
    )


def test_complete_only_pending_and_only_own_tasks(client: FlaskClient) -> None:
    task_id = create(client).get_json()["task_id"]
    done = {"response": {"category": "public"}}
    assert_error(client.post(f"/v1/task/{task_id}/complete", json=done, headers=basic_auth(API_OTHER_TEST_KEY)), 404)
    client.post(f"/v1/task/{task_id}/complete", json=done, headers=basic_auth(API_TEST_KEY))
    assert_error(
        client.post(f"/v1/task/{task_id}/complete", json=done, headers=basic_auth(API_TEST_KEY)), 400, "completed"
    )


def test_delivery_log_shape_and_auth(client: FlaskClient) -> None:
    task_id = create(client, metadata={"sim_faults": "duplicate=2"}).get_json()["task_id"]
    assert_error(client.get(f"/v1/task/{task_id}/deliveries"), 401)
    assert_error(client.get(f"/v1/task/{task_id}/deliveries", headers=basic_auth(API_OTHER_TEST_KEY)), 404)
    log = client.get(f"/v1/task/{task_id}/deliveries", headers=basic_auth(API_TEST_KEY)).get_json()
    assert log == {
        "task_id": task_id,
        "status": "pending",
        "callback_url": CB,
        "callback_succeeded": None,
        "faults": ["duplicate=2"],
        "deliveries": [],
        "attempts": [],
    }


# -- the rest of the HTTP surface --------------------------------------------------------------------------


def test_rate_limit_is_per_key_with_retry_after(make_settings: Callable[..., SimSettings]) -> None:
    app = create_app(make_settings(rate_limit=2.0, completion_delay=60.0))
    client = app.test_client()
    try:
        statuses = [client.get("/v1/tasks", headers=basic_auth(API_TEST_KEY)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        answer = client.get("/v1/tasks", headers=basic_auth(API_TEST_KEY))
        assert_error(answer, 429)
        assert int(answer.headers["Retry-After"]) >= 1
        assert client.get("/v1/tasks", headers=basic_auth(API_OTHER_TEST_KEY)).status_code == 200
    finally:
        app.extensions["scale_sim"].close()


def test_unknown_api_routes_answer_json(client: FlaskClient) -> None:
    assert_error(client.get("/v1/nothing-here", headers=basic_auth(API_TEST_KEY)), 404)
    assert_error(client.delete("/v1/tasks", headers=basic_auth(API_TEST_KEY)), 405)


def test_success_is_always_200(client: FlaskClient) -> None:
    assert create(client).status_code == 200
    assert client.get("/v1/tasks", headers=basic_auth(API_TEST_KEY)).status_code == 200

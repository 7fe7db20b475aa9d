"""`GET /v1/tasks` as today's API answers it: filters on update, completion and review state, tags, unique ids.

Also the way time is made to pass without sleeping (`POST /v1/task/{id}/backdate`), and the official
client's `get_tasks(project_name=..., completed_after=..., updated_after=...)` against a real server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from scaleapi import ScaleClient
from scaleapi.tasks import TaskReviewStatus, TaskType

from scale_sim.server import SimServer
from scale_sim.tasks import timestamp_ms
from tests.support.keys import API_TEST_KEY
from tests.support.processes import wait_for
from tests.support.tasks import basic_auth, create, json_body

CB = "http://127.0.0.1:9/callback"


def post(client: FlaskClient, path: str, **body: Any) -> dict[str, Any]:
    answer = client.post(f"/v1/{path}", json=body, headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == 200, answer.get_json()
    result: dict[str, Any] = answer.get_json()
    return result


def listed(client: FlaskClient, query: Any) -> list[str]:
    answer = client.get("/v1/tasks", query_string=query, headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == 200, answer.get_json()
    return [doc["task_id"] for doc in answer.get_json()["docs"]]


def test_the_answer_has_todays_keys(client: FlaskClient) -> None:
    create(client)
    body = client.get("/v1/tasks?limit=1", headers=basic_auth(API_TEST_KEY)).get_json()
    assert {"docs", "total", "limit", "has_more"} <= set(body) and "offset" in body  # the 2.x client reads offset


def test_updated_after_finds_audits_recalls_and_errors(client: FlaskClient) -> None:
    audited, recalled, failed, untouched = (create(client) for _ in range(4))
    for task_id in (audited, recalled):
        post(client, f"task/{task_id}/complete", response={"category": "public"})
    mark = post(client, f"task/{untouched}/cancel")["updated_at"]
    # The changes below must land after the mark's millisecond, or `later` would leave them out.
    wait_for(lambda: datetime.now(UTC).timestamp() * 1000 >= timestamp_ms(mark) + 2, what="the clock to pass the mark")
    post(client, f"task/{audited}/audit", result="accepted")
    post(client, f"task/{recalled}/recall", complete_in=None)
    post(client, f"task/{failed}/error")
    after = sorted(listed(client, {"updated_after": mark}))
    assert untouched in after  # updated_after is inclusive, like the other bounds
    changed = {audited, recalled, failed}
    later = iso(timestamp_ms(mark) + 1)
    assert set(listed(client, {"updated_after": later})) == changed
    assert untouched in listed(client, {"updated_before": mark}) and audited not in listed(
        client, {"updated_before": mark}
    )
    assert listed(client, {"status": "error"}) == [failed]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_filters_on_review_status_unique_id_tags_project_batch(client: FlaskClient) -> None:
    a = create(client, project="p1", batch="b1", unique_id="a", tags=["red", "big"])
    b = create(client, project="p1", batch="b2", unique_id="b,1", tags=["blue"])
    c = create(client, project="p2", unique_id="c")
    for task_id in (a, b, c):
        post(client, f"task/{task_id}/complete", response={"category": "public"})
    post(client, f"task/{a}/audit", result="accepted")
    post(client, f"task/{b}/audit", result="rejected")
    assert listed(client, {"customer_review_status": "accepted"}) == [a]
    assert set(listed(client, {"customer_review_status": "accepted,rejected"})) == {a, b}
    assert listed(client, [("customer_review_status", "pending")]) == [c]
    assert listed(client, {"unique_id": "b,1"}) == [b]
    assert set(listed(client, [("unique_id", "a"), ("unique_id", "c")])) == {a, c}
    assert listed(client, {"tags": "red"}) == [a]
    assert set(listed(client, {"tags": "red,blue"})) == {a, b}
    assert set(listed(client, [("tags", "big"), ("tags", "blue")])) == {a, b}
    assert listed(client, {"tags": "green"}) == []
    assert set(listed(client, {"project": "p1"})) == {a, b}
    assert listed(client, {"project": "p1", "batch": "b2"}) == [b]
    assert listed(client, {"type": "categorization", "project": "p2"}) == [c]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"updated_after": "yesterday"}, "Invalid parameter 'updated_after': must be an ISO 8601 date"),
        ({"updated_before": "2026-13-01"}, "'updated_before'"),
        ({"completed_after": "x"}, "'completed_after'"),
        ({"customer_review_status": "approved"}, "'customer_review_status': 'approved' is not one of"),
        (
            {"updated_after": "2026-02-01", "updated_before": "2026-01-01"},
            "'updated_after' is later than 'updated_before'",
        ),
        ({"start_time": "2026-02-01", "end_time": "2026-01-01"}, "'start_time' is later than 'end_time'"),
        ({"status": "done"}, "'status': must be one of"),
        ({"limit": "0"}, "'limit': must be between 1 and 100"),
        ({"limit": "101"}, "'limit'"),
        ({"next_token": "abc"}, "'next_token'"),
    ],
)
def test_bad_list_queries_are_400_with_the_parameter_named(
    client: FlaskClient, query: dict[str, str], message: str
) -> None:
    answer = client.get("/v1/tasks", query_string=query, headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == 400
    assert message in answer.get_json()["error"]


def test_next_token_pages_through_a_filtered_list(client: FlaskClient) -> None:
    ids = [create(client, tags=["paged"]) for _ in range(5)]
    create(client)
    seen: list[str] = []
    query: dict[str, Any] = {"tags": "paged", "limit": 2}
    while True:
        body = client.get("/v1/tasks", query_string=query, headers=basic_auth(API_TEST_KEY)).get_json()
        seen += [doc["task_id"] for doc in body["docs"]]
        assert body["total"] == 5
        if not body["has_more"]:
            assert "next_token" not in body
            break
        query["next_token"] = body["next_token"]
    assert seen == ids[::-1]


# -- time made to pass ---------------------------------------------------------------------------------


def test_backdate_moves_created_at_back(client: FlaskClient) -> None:
    task_id = create(client)
    moved = post(client, f"task/{task_id}/backdate", seconds=7 * 86400)
    created = timestamp_ms(moved["created_at"])
    assert moved["updated_at"] == moved["created_at"]  # never changed since creation: moves along
    done = post(client, f"task/{task_id}/complete", response={"category": "public"})
    assert timestamp_ms(done["completed_at"]) - created >= 7 * 86400 * 1000
    week_ago = iso(created + 1000)
    assert task_id not in listed(client, {"start_time": week_ago})  # created a week ago
    assert task_id in listed(client, {"completed_after": week_ago})  # but completed now
    absolute = post(client, f"task/{task_id}/backdate", created_at="2020-01-01T00:00:00Z")
    assert absolute["created_at"] == "2020-01-01T00:00:00.000Z" and absolute["updated_at"] == done["updated_at"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "exactly one of created_at or seconds"),
        ({"seconds": 5, "created_at": "2020-01-01"}, 400, "exactly one of created_at or seconds"),
        ({"seconds": -5}, 400, "'seconds'"),
        ({"seconds": "5"}, 400, "'seconds'"),
        ({"created_at": "soon"}, 400, "'created_at': must be an ISO 8601 date"),
        ({"created_at": "2999-01-01"}, 400, "can only move back"),
        ({"seconds": 10**8 * 60}, 400, "'seconds'"),
    ],
)
def test_backdate_bad_input(client: FlaskClient, body: dict[str, Any], status: int, message: str) -> None:
    task_id = create(client)
    answer = client.post(f"/v1/task/{task_id}/backdate", json=body, headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == status and message in answer.get_json()["error"]
    unknown = client.post(
        "/v1/task/000000000000000000000000/backdate", json={"seconds": 1}, headers=basic_auth(API_TEST_KEY)
    )
    assert unknown.status_code == 404


# -- the official client -------------------------------------------------------------------------------


def test_get_tasks_with_project_completed_after_and_updated_after(start_sim: Callable[..., SimServer]) -> None:
    sim = start_sim(completion_delay=3600.0)
    client = ScaleClient(API_TEST_KEY, api_instance_url=sim.api_url)
    body = {**json_body(CB, "imageannotation"), "project": "recon"}
    late = client.create_task(TaskType.ImageAnnotation, **body)
    audited = client.create_task(TaskType.ImageAnnotation, **body)
    other = client.create_task(TaskType.ImageAnnotation, **{**body, "project": "elsewhere"})
    api = client.api
    api.post_request(f"task/{late.id}/backdate", body={"seconds": 10 * 86400})
    start = datetime.now(UTC)
    for task in (late, audited, other):
        api.post_request(f"task/{task.id}/complete", body={"response": {"annotations": [], "global_attributes": {}}})
    completed = {t.id for t in client.get_tasks(project_name="recon", completed_after=start.isoformat())}
    assert completed == {late.id, audited.id}
    day_ago = (start - timedelta(days=1)).isoformat()
    created_recently = {t.id for t in client.get_tasks(project_name="recon", created_after=day_ago)}
    assert created_recently == {audited.id}  # the late one was created ten days ago (backdated)
    mark = client.get_task(audited.id).as_dict()["updated_at"]
    api.post_request(f"task/{audited.id}/audit", body={"result": "rejected"})
    updated = list(client.get_tasks(project_name="recon", updated_after=iso(timestamp_ms(mark) + 1)))
    assert [t.id for t in updated] == [audited.id]
    assert updated[0].as_dict()["customer_review_status"] == "rejected"
    reviewed = list(client.get_tasks(project_name="recon", review_status=[TaskReviewStatus.Rejected]))
    assert [t.id for t in reviewed] == [audited.id]
    wait_for(lambda: client.tasks(project="recon", limit=1).total == 2, what="the project's two tasks")

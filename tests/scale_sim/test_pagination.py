"""`GET /v1/tasks`: newest first, offset and next_token paging, filters, limits, and refused queries."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from scale_sim.auth import account_for_key
from scale_sim.pagination import Cursor, ListQuery, page_body
from scale_sim.simulator import Simulator
from scale_sim.tasks import iso_ms
from tests.support.keys import API_OTHER_TEST_KEY, API_TEST_KEY
from tests.support.tasks import basic_auth, json_body

CB = "http://www.example.com/callback"


def make_tasks(client: FlaskClient, count: int, task_type: str = "categorization", **extra: Any) -> list[str]:
    ids = []
    for _ in range(count):
        answer = client.post(
            f"/v1/task/{task_type}", json={**json_body(CB, task_type), **extra}, headers=basic_auth(API_TEST_KEY)
        )
        ids.append(answer.get_json()["task_id"])
    return ids


def list_tasks(client: FlaskClient, key: str = API_TEST_KEY, **query: Any) -> dict[str, Any]:
    answer = client.get("/v1/tasks", query_string=query, headers=basic_auth(key))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body: dict[str, Any] = answer.get_json()
    return body


def ids_of(page: dict[str, Any]) -> list[str]:
    return [doc["task_id"] for doc in page["docs"]]


def test_default_page_is_newest_first(client: FlaskClient) -> None:
    ids = make_tasks(client, 5)
    page = list_tasks(client)
    assert ids_of(page) == ids[::-1]
    assert (page["total"], page["limit"], page["offset"], page["has_more"]) == (5, 100, 0, False)
    assert "next_token" not in page


def test_offset_paging(client: FlaskClient) -> None:
    ids = make_tasks(client, 7)[::-1]
    first = list_tasks(client, limit=3)
    second = list_tasks(client, limit=3, offset=3)
    last = list_tasks(client, limit=3, offset=6)
    assert ids_of(first) == ids[:3] and first["has_more"] is True
    assert ids_of(second) == ids[3:6] and second["offset"] == 3
    assert ids_of(last) == ids[6:] and last["has_more"] is False and "next_token" not in last
    beyond = list_tasks(client, limit=3, offset=50)
    assert beyond["docs"] == [] and beyond["has_more"] is False and beyond["total"] == 7


def test_next_token_paging_visits_every_task_once(client: FlaskClient) -> None:
    ids = make_tasks(client, 7)[::-1]
    seen: list[str] = []
    page = list_tasks(client, limit=2)
    offsets = [page["offset"]]
    while "next_token" in page:
        seen += ids_of(page)
        page = list_tasks(client, limit=2, next_token=page["next_token"])
        offsets.append(page["offset"])
    seen += ids_of(page)
    assert seen == ids
    assert offsets == [0, 2, 4, 6]
    assert page["has_more"] is False


def test_next_token_is_stable_while_new_tasks_arrive(client: FlaskClient) -> None:
    ids = make_tasks(client, 4)[::-1]
    first = list_tasks(client, limit=2)
    make_tasks(client, 3)  # newer ones must not shift the next page
    second = list_tasks(client, limit=2, next_token=first["next_token"])
    assert ids_of(second) == ids[2:4]


def insert(sim: Simulator, task_id: str, created_ms: int) -> None:
    """Store a task with a chosen created_at (the API would stamp the current time)."""
    task: dict[str, Any] = {"task_id": task_id, "created_at": iso_ms(created_ms), "callback_url": CB}
    task.update(type="comparison", params={}, metadata={})
    sim.store.insert_task(task, account=account_for_key(API_TEST_KEY).id, complete_at=None, faults={})


def test_ties_on_created_at_are_broken_by_task_id(sim: Simulator, client: FlaskClient) -> None:
    ids = [f"{n:024x}" for n in (5, 3, 9, 1)]
    for task_id in ids:
        insert(sim, task_id, 1_700_000_000_000)
    expected = sorted(ids, reverse=True)
    assert ids_of(list_tasks(client)) == expected
    first = list_tasks(client, limit=2)
    assert ids_of(list_tasks(client, limit=2, next_token=first["next_token"])) == expected[2:]


def test_filters_start_and_end_time_on_created_at(sim: Simulator, client: FlaskClient) -> None:
    base = 1_466_672_974_752  # 2016-06-23T09:09:34.752Z
    for n in range(3):
        insert(sim, f"{n + 1:024x}", base + n * 1000)
    assert ids_of(list_tasks(client, start_time="2016-06-23T09:09:35.752Z")) == [f"{3:024x}", f"{2:024x}"]
    assert ids_of(list_tasks(client, end_time="2016-06-23T09:09:35.752Z")) == [f"{2:024x}", f"{1:024x}"]
    window = list_tasks(client, start_time="2016-06-23T09:09:35", end_time="2016-06-23T09:09:36")
    assert ids_of(window) == [f"{2:024x}"]
    assert list_tasks(client, start_time="2016-06-23 09:09:34.752000")["total"] == 3
    assert list_tasks(client, start_time="2016-06-24")["total"] == 0
    assert list_tasks(client, end_time="2016-06-23T11:09:34.751+02:00")["total"] == 0


def test_filters_status_and_type(client: FlaskClient, sim: Simulator) -> None:
    categorizations = make_tasks(client, 3)
    annotations = make_tasks(client, 2, "annotation")
    sim.complete_task(categorizations[0], {"category": "public"})
    client.post(f"/v1/task/{categorizations[1]}/cancel", headers=basic_auth(API_TEST_KEY))
    assert ids_of(list_tasks(client, status="completed")) == [categorizations[0]]
    assert ids_of(list_tasks(client, status="canceled")) == [categorizations[1]]
    assert set(ids_of(list_tasks(client, status="pending"))) == {categorizations[2], *annotations}
    assert ids_of(list_tasks(client, type="annotation")) == annotations[::-1]
    assert ids_of(list_tasks(client, type="categorize")) == categorizations[::-1]
    assert list_tasks(client, type="chatlite")["total"] == 0


def test_filters_on_completed_at_and_project(client: FlaskClient, sim: Simulator) -> None:
    ids = make_tasks(client, 2, project="alpha") + make_tasks(client, 1, project="beta")
    completed = sim.complete_task(ids[0], {"category": "public"})
    assert ids_of(list_tasks(client, completed_after=completed["completed_at"])) == [ids[0]]
    assert list_tasks(client, completed_before="2000-01-01")["total"] == 0
    assert ids_of(list_tasks(client, project="alpha")) == ids[1::-1]
    assert ids_of(list_tasks(client, project="beta")) == [ids[2]]


def test_each_account_lists_only_its_own(client: FlaskClient) -> None:
    make_tasks(client, 2)
    assert list_tasks(client, key=API_OTHER_TEST_KEY)["total"] == 0


def test_unknown_query_parameters_are_ignored(client: FlaskClient) -> None:
    make_tasks(client, 1)
    assert list_tasks(client, include_attachment_url="True", limited_response="x")["total"] == 1


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "1.5"}, "offset"),
        ({"status": "done"}, "status"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"end_time": "2016-13-01"}, "end_time"),
        ({"completed_after": "soon"}, "completed_after"),
        ({"next_token": "garbage"}, "next_token"),
        ({"next_token": "sim1.!!!"}, "next_token"),
        ({"next_token": "sim1.WzFd"}, "next_token"),  # base64 of [1]
        ({"next_token": Cursor(5, "x" * 24).encode()}, "next_token"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(client: FlaskClient, query: dict[str, Any], name: str) -> None:
    answer = client.get("/v1/tasks", query_string=query, headers=basic_auth(API_TEST_KEY))
    assert answer.status_code == 400
    assert answer.get_json()["status_code"] == 400
    assert name in answer.get_json()["error"]


def test_limit_bounds_are_accepted() -> None:
    assert ListQuery.from_args({"limit": "1"}).limit == 1
    assert ListQuery.from_args({"limit": "100"}).limit == 100
    assert ListQuery.from_args({}).limit == 100


def test_cursor_round_trip() -> None:
    cursor = Cursor(1466672974752, "576ba74eec471ff9b01557cc")
    assert Cursor.decode(cursor.encode()) == cursor


def test_page_body_offers_a_token_only_with_more_to_come() -> None:
    doc = {"task_id": "576ba74eec471ff9b01557cc", "created_at": "2016-06-23T09:09:34.752Z"}
    assert "next_token" in page_body([doc], total=2, limit=1, offset=0)
    assert "next_token" not in page_body([doc], total=1, limit=1, offset=0)

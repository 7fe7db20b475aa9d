"""The official `scaleapi` client, unchanged, against a real simulator on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from scaleapi import ScaleClient
from scaleapi.exceptions import (
    ScaleInternalError,
    ScaleInvalidRequest,
    ScaleResourceNotFound,
    ScaleTooManyRequests,
    ScaleUnauthorized,
)
from scaleapi.tasks import Task, TaskStatus, TaskType

from scale_sim.server import SimServer
from scale_sim.validation import REFERENCE_TYPES
from tests.support.keys import API_OTHER_TEST_KEY, API_TEST_KEY
from tests.support.processes import wait_for
from tests.support.receiver import Receiver
from tests.support.tasks import CLIENT_TYPES, json_body

CB = "http://127.0.0.1:9/callback"


@pytest.fixture
def pending_sim(start_sim: Callable[..., SimServer]) -> SimServer:
    """A simulator whose tasks stay pending (completion an hour away)."""
    return start_sim(completion_delay=3600.0)


def client_for(sim: SimServer, key: str = API_TEST_KEY) -> ScaleClient:
    return ScaleClient(key, api_instance_url=sim.api_url)


def create(client: ScaleClient, task_type: str = "categorization", **extra: Any) -> Task:
    return client.create_task(CLIENT_TYPES[task_type], **{**json_body(CB, task_type), **extra})


@pytest.mark.parametrize("task_type", REFERENCE_TYPES)
def test_create_every_type(pending_sim: SimServer, task_type: str) -> None:
    task = create(client_for(pending_sim), task_type)
    assert len(task.id) == 24
    assert task.type == task_type
    assert task.status == "pending"
    assert task.is_test is True
    assert task.callback_url == CB


def test_get_task(pending_sim: SimServer) -> None:
    client = client_for(pending_sim)
    created = create(client, "annotation")
    fetched = client.get_task(created.id)
    assert fetched.as_dict() == created.as_dict()
    assert fetched.params["objects_to_annotate"] == ["baby cow", "big cow"]


def test_get_unknown_and_other_accounts_tasks(pending_sim: SimServer) -> None:
    task = create(client_for(pending_sim))
    with pytest.raises(ScaleResourceNotFound):
        client_for(pending_sim).get_task("000000000000000000000000")
    with pytest.raises(ScaleResourceNotFound):
        client_for(pending_sim, API_OTHER_TEST_KEY).get_task(task.id)


def test_cancel_a_pending_task(pending_sim: SimServer) -> None:
    client = client_for(pending_sim)
    task = create(client)
    assert client.cancel_task(task.id).status == "canceled"
    assert client.get_task(task.id).status == "canceled"


def test_cancel_a_completed_task_is_an_error(start_sim: Callable[..., SimServer], receiver: Receiver) -> None:
    sim = start_sim(completion_delay=0.0)
    client = client_for(sim)
    task = create(client, callback_url=receiver.url)
    wait_for(lambda: client.get_task(task.id).status == "completed", what="completion")
    with pytest.raises(ScaleInternalError):
        client.cancel_task(task.id)
    completed = client.get_task(task.id)
    assert completed.response["category"] in ("public", "private")
    receiver.wait_for(1, task.id)
    assert wait_for(lambda: client.get_task(task.id).as_dict().get("callback_succeeded"))


def test_bad_key_and_bad_parameters(pending_sim: SimServer) -> None:
    with pytest.raises(ScaleUnauthorized):
        client_for(pending_sim, "sk_not_a_scale_key").tasks()
    with pytest.raises(ScaleInvalidRequest, match="categories"):
        client_for(pending_sim).create_task(
            TaskType.Categorization,
            callback_url=CB,
            instruction="?",
            attachment_type="text",
            attachment="car",
        )


def test_tasks_pages_with_next_token(pending_sim: SimServer) -> None:
    client = client_for(pending_sim)
    ids = [create(client).id for _ in range(5)][::-1]
    seen: list[str] = []
    page = client.tasks(limit=2)
    assert page.total == 5 and page.limit == 2 and page.has_more is True
    while True:
        seen += [task.id for task in page]
        if not page.has_more:
            break
        page = client.tasks(limit=2, next_token=page.next_token)
    assert seen == ids


def test_tasks_filters(pending_sim: SimServer) -> None:
    client = client_for(pending_sim)
    kept = create(client)
    canceled = create(client, "annotation")
    client.cancel_task(canceled.id)
    assert [t.id for t in client.tasks(status="canceled")] == [canceled.id]
    assert [t.id for t in client.tasks(type="categorization")] == [kept.id]
    assert [t.id for t in client.tasks(start_time="2999-01-01")] == []


def test_get_tasks_iterates_every_page_of_a_project(pending_sim: SimServer) -> None:
    client = client_for(pending_sim)
    ours = {create(client, project="sim-e2e").id for _ in range(5)}
    create(client, project="another")
    found = list(client.get_tasks(project_name="sim-e2e", limit=2))
    assert {task.id for task in found} == ours and len(found) == 5
    assert client.get_tasks_count(project_name="sim-e2e") == 5
    pending = list(client.get_tasks(project_name="sim-e2e", status=TaskStatus.Pending))
    assert len(pending) == 5


def test_rate_limit_raises_too_many_requests(start_sim: Callable[..., SimServer]) -> None:
    sim = start_sim(completion_delay=3600.0, rate_limit=1.0)
    client = client_for(sim)
    client.tasks()
    with pytest.raises(ScaleTooManyRequests):
        client.tasks()

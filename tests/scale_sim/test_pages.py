"""The HTML page: pending tasks listed with a form each, and completing a task from it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from scale_sim.simulator import Simulator
from tests.support.keys import API_LIVE_KEY, API_TEST_KEY
from tests.support.tasks import basic_auth, json_body

CB = "http://www.example.com/callback"


def create(client: FlaskClient, task_type: str = "categorization", key: str = API_TEST_KEY, **extra: Any) -> str:
    answer = client.post(f"/v1/task/{task_type}", json={**json_body(CB, task_type), **extra}, headers=basic_auth(key))
    task_id: str = answer.get_json()["task_id"]
    return task_id


def task_of(sim: Simulator, task_id: str) -> dict[str, Any]:
    return sim.store.get_task(task_id)


@pytest.mark.parametrize("path", ["/", "/sim/"])
def test_the_page_lists_pending_tasks_of_every_account(client: FlaskClient, path: str) -> None:
    ours = create(client)
    theirs = create(client, "annotation", key=API_LIVE_KEY)
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert ours in html and theirs in html
    assert f"/sim/task/{ours}/complete" in html
    assert API_TEST_KEY not in html and API_LIVE_KEY not in html


def test_the_page_escapes_task_content(client: FlaskClient) -> None:
    create(client, instruction="<script>alert(1)</script>")
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_complete_a_categorization_from_the_form(client: FlaskClient, sim: Simulator) -> None:
    task_id = create(client)
    answer = client.post(f"/sim/task/{task_id}/complete", data={"category": "private"})
    assert answer.status_code == 303
    task = task_of(sim, task_id)
    assert task["status"] == "completed" and task["response"] == {"category": "private"}
    assert task_id in client.get(answer.headers["Location"]).get_data(as_text=True)


def test_complete_a_multiple_choice_categorization_with_ids(client: FlaskClient, sim: Simulator) -> None:
    task_id = create(client, allow_multiple=True, category_ids={"1": "public", "2": "private"})
    client.post(f"/sim/task/{task_id}/complete", data={"category": ["public", "private"]})
    assert task_of(sim, task_id)["response"] == {"category": ["public", "private"], "category_id": ["1", "2"]}


def test_complete_a_phonecall_from_the_form(client: FlaskClient, sim: Simulator) -> None:
    task_id = create(client, "phonecall")
    form = {"outcome": "hung_up", "choice": "He is not happy", "field.email": "a@example.com"}
    client.post(f"/sim/task/{task_id}/complete", data=form)
    assert task_of(sim, task_id)["response"] == {
        "outcome": "hung_up",
        "choice": "He is not happy",
        "fields": {"email": "a@example.com"},
    }


def test_complete_an_annotation_and_an_audio_error(client: FlaskClient, sim: Simulator) -> None:
    boxes = [{"left": 1, "top": 2, "width": 3, "height": 4, "label": "big cow"}]
    annotation = create(client, "annotation")
    client.post(f"/sim/task/{annotation}/complete", data={"annotations": json.dumps(boxes)})
    assert task_of(sim, annotation)["response"] == {"annotations": boxes}
    audio = create(client, "audiotranscription")
    client.post(f"/sim/task/{audio}/complete", data={"error": "The audio file cannot be loaded.", "transcript": ""})
    assert task_of(sim, audio)["response"] == {"error": "The audio file cannot be loaded."}


def test_raw_json_overrides_the_controls(client: FlaskClient, sim: Simulator) -> None:
    task_id = create(client, "datacollection")
    raw = {"fields": {"hiring_page": "https://example.com/jobs"}, "extra": True}
    client.post(f"/sim/task/{task_id}/complete", data={"raw_json": json.dumps(raw), "field.hiring_page": "x"})
    assert task_of(sim, task_id)["response"] == raw


@pytest.mark.parametrize(
    ("task_type", "form", "message"),
    [
        ("datacollection", {"raw_json": "{not json"}, "not valid JSON"),
        ("datacollection", {"raw_json": "[1, 2]"}, "JSON object"),
        ("categorization", {}, "choose a category"),
        ("annotation", {"annotations": "{}"}, "JSON list"),
        ("annotation", {"annotations": "[oops"}, "JSON list"),
        ("audiotranscription", {"transcript": "hi", "duration": "long"}, "duration must be a number"),
    ],
)
def test_bad_forms_show_an_error(
    client: FlaskClient, sim: Simulator, task_type: str, form: dict[str, str], message: str
) -> None:
    task_id = create(client, task_type)
    answer = client.post(f"/sim/task/{task_id}/complete", data=form)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert task_of(sim, task_id)["status"] == "pending"


def test_completing_twice_or_an_unknown_task_shows_an_error(client: FlaskClient) -> None:
    task_id = create(client)
    client.post(f"/sim/task/{task_id}/complete", data={"category": "public"})
    assert client.post(f"/sim/task/{task_id}/complete", data={"category": "public"}).status_code == 400
    assert client.post("/sim/task/000000000000000000000000/complete", data={}).status_code == 404

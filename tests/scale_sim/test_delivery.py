"""Callbacks against a local receiver: body and header, retries, callback_succeeded, each fault, restarts."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import requests

from scale_sim import create_app
from scale_sim.config import SimSettings
from scale_sim.delivery import AUTH_HEADER
from scale_sim.server import SimServer
from scale_sim.simulator import Simulator
from scale_sim.tasks import timestamp_ms
from tests.support.keys import API_LIVE_KEY, API_TEST_KEY, CALLBACK_KEY
from tests.support.processes import wait_for
from tests.support.receiver import MIB, Receiver
from tests.support.tasks import basic_auth, json_body

StartSim = Callable[..., SimServer]


def create(sim: SimServer, url: str, task_type: str = "categorization", key: str = API_TEST_KEY, **extra: Any) -> str:
    answer = requests.post(
        f"{sim.api_url}/task/{task_type}",
        json={**json_body(url, task_type), **extra},
        auth=(key, ""),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def get(sim: SimServer, path: str, key: str = API_TEST_KEY) -> dict[str, Any]:
    answer = requests.get(f"{sim.api_url}/{path}", auth=(key, ""), timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def log_of(sim: SimServer, task_id: str) -> dict[str, Any]:
    return get(sim, f"task/{task_id}/deliveries")


def faults(*specs: str) -> dict[str, Any]:
    return {"metadata": {"sim_faults": list(specs)}}


def outcome_of(sim: SimServer, task_id: str, succeeded: bool) -> dict[str, Any]:
    """Wait until the task's callback_succeeded is `succeeded`; return its delivery log then."""
    wait_for(
        lambda: log_of(sim, task_id)["callback_succeeded"] is succeeded,
        what=f"callback_succeeded={succeeded}",
    )
    return log_of(sim, task_id)


def all_succeeded(sim: SimServer, task_id: str) -> bool:
    deliveries = log_of(sim, task_id)["deliveries"]
    return bool(deliveries) and all(d["state"] == "succeeded" for d in deliveries)


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/callback"


def test_callback_body_and_header(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    task_id = create(sim, receiver.url)
    [callback] = receiver.wait_for(1, task_id)
    assert callback.path == "/callback"
    assert callback.headers[AUTH_HEADER.title()] == CALLBACK_KEY
    assert callback.headers["Content-Type"] == "application/json"
    body = callback.body
    assert body is not None and list(body) == ["task_id", "status", "response", "task"]
    assert body["task_id"] == body["task"]["task_id"] == task_id
    assert body["response"] == body["task"]["response"]
    assert body["response"]["category"] in ("public", "private")
    assert body["task"]["status"] == body["status"] == "completed"
    assert body["task"]["is_test"] is True
    assert body["task"]["callback_completed"] is False  # as it stood when the event happened
    assert timestamp_ms(body["task"]["completed_at"]) >= timestamp_ms(body["task"]["created_at"])
    wait_for(lambda: get(sim, f"task/{task_id}").get("callback_succeeded"))
    task = get(sim, f"task/{task_id}")
    assert task["callback_succeeded"] is True
    assert task["callback_completed"] is True
    moving = {"callback_succeeded", "callback_completed"}
    assert {k: v for k, v in task.items() if k not in moving} == {
        k: v for k, v in body["task"].items() if k not in moving
    }


def test_retries_until_exactly_200_and_logs_each_try(start_sim: StartSim, receiver: Receiver) -> None:
    receiver.respond_with(500, 503, 302, 204)  # a 204 is not a 200: Scale retries it too
    sim = start_sim()
    task_id = create(sim, receiver.url)
    receiver.wait_for(5, task_id)
    log = outcome_of(sim, task_id, True)
    assert [a["status_code"] for a in log["attempts"]] == [500, 503, 302, 204, 200]
    assert [a["attempt"] for a in log["attempts"]] == [1, 2, 3, 4, 5]
    times = [timestamp_ms(a["at"]) for a in log["attempts"]]
    assert times == sorted(times)
    assert all(a["error"] is None and a["copy"] == 1 for a in log["attempts"])
    assert log["deliveries"] == [
        {
            "copy": 1,
            "state": "succeeded",
            "attempts": 5,
            "next_attempt_at": None,
            "wrong_key": False,
            "url": receiver.url,
            "event": "completed",
            "event_at": get(sim, f"task/{task_id}")["completed_at"],
        }
    ]
    bodies = [r.body for r in receiver.for_task(task_id)]
    assert all(b == bodies[0] for b in bodies)  # a retry repeats the same content


def test_timeouts_count_as_failed_tries(start_sim: StartSim, receiver: Receiver) -> None:
    receiver.slow_seconds = 1.0
    receiver.respond_with(-1)
    sim = start_sim(callback_timeout=0.2)
    task_id = create(sim, receiver.url)
    log = outcome_of(sim, task_id, True)
    first, second = log["attempts"]
    assert first["status_code"] is None and "Timeout" in first["error"]
    assert second["status_code"] == 200


def test_gives_up_after_20_tries_and_sets_callback_succeeded_false(start_sim: StartSim) -> None:
    sim = start_sim(time_scale=0.000001)
    task_id = create(sim, closed_port_url())
    log = outcome_of(sim, task_id, False)
    assert len(log["attempts"]) == 20
    assert [a["attempt"] for a in log["attempts"]] == list(range(1, 21))
    assert all(a["status_code"] is None and a["error"].startswith("ConnectionError") for a in log["attempts"])
    assert log["deliveries"][0]["state"] == "failed"
    assert get(sim, f"task/{task_id}")["callback_succeeded"] is False


def test_callback_succeeded_is_absent_until_an_outcome(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim(completion_delay=3600.0)
    task_id = create(sim, receiver.url)
    assert "callback_succeeded" not in get(sim, f"task/{task_id}")
    assert log_of(sim, task_id)["callback_succeeded"] is None


def test_duplicate_sends_the_same_callback_twice(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    task_id = create(sim, receiver.url, **faults("duplicate"))
    first, second = receiver.wait_for(2, task_id)
    assert first.body == second.body
    wait_for(lambda: all_succeeded(sim, task_id))
    log = log_of(sim, task_id)
    assert [d["copy"] for d in log["deliveries"]] == [1, 2]
    assert len(receiver.for_task(task_id)) == 2


def test_duplicate_n_sends_n_copies(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    task_id = create(sim, receiver.url, **faults("duplicate=3"))
    receiver.wait_for(3, task_id)
    wait_for(lambda: all_succeeded(sim, task_id))
    assert len(receiver.for_task(task_id)) == 3
    assert log_of(sim, task_id)["faults"] == ["duplicate=3"]


def test_reorder_sends_a_callback_after_the_next_tasks(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    held = create(sim, receiver.url, **faults("reorder"))
    wait_for(lambda: get(sim, f"task/{held}")["status"] == "completed")
    assert log_of(sim, held)["deliveries"][0]["state"] == "held"
    nxt = create(sim, receiver.url)
    receiver.wait_for(1, held)
    order = [r.body["task_id"] for r in receiver.received if r.body]
    assert order == [nxt, held]
    # the held task's completion came first: the callbacks arrive out of completion order
    assert get(sim, f"task/{held}")["completed_at"] <= get(sim, f"task/{nxt}")["completed_at"]


def test_wrong_key_sends_another_auth_header(start_sim: StartSim, receiver: Receiver) -> None:
    receiver.respond_with(401)  # what a receiver should answer; Scale would retry
    sim = start_sim()
    task_id = create(sim, receiver.url, **faults("wrong_key"))
    first, second = receiver.wait_for(2, task_id)
    for callback in (first, second):
        sent = callback.headers[AUTH_HEADER.title()]
        assert sent and sent != CALLBACK_KEY
    assert [a["wrong_key"] for a in log_of(sim, task_id)["attempts"]] == [True, True]


def test_drop_never_delivers(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    dropped = create(sim, receiver.url, **faults("drop"))
    wait_for(lambda: get(sim, f"task/{dropped}")["status"] == "completed")
    after = create(sim, receiver.url)
    receiver.wait_for(1, after)  # callbacks go out in order, so the dropped one would have come first
    assert receiver.for_task(dropped) == []
    log = log_of(sim, dropped)
    assert log["deliveries"][0]["state"] == "dropped" and log["attempts"] == []
    task = get(sim, f"task/{dropped}")
    assert "callback_succeeded" not in task and task["response"]


def test_delay_waits_before_delivering(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    delayed = create(sim, receiver.url, **faults("delay=0.4"))
    prompt = create(sim, receiver.url)
    [callback] = receiver.wait_for(1, delayed)
    completed_ms = timestamp_ms(get(sim, f"task/{delayed}")["completed_at"])
    assert callback.at * 1000 - completed_ms >= 400 - 1
    assert receiver.for_task(prompt)[0].at < callback.at


def test_oversize_makes_a_receiver_answer_413(start_sim: StartSim) -> None:
    receiver = Receiver(max_bytes=10 * MIB).start()
    try:
        sim = start_sim(time_scale=1.0)  # the retry is 10 s away: one try is enough here
        task_id = create(sim, receiver.url, "annotation", **faults("oversize"))
        [callback] = receiver.wait_for(1)  # drained unread, so it has no body to match a task_id in
        assert callback.size > 10 * MIB and callback.answered == 413
        wait_for(lambda: log_of(sim, task_id)["attempts"])
        log = log_of(sim, task_id)
        assert log["attempts"][0]["status_code"] == 413
        assert log["deliveries"][0]["state"] == "pending" and log["deliveries"][0]["next_attempt_at"]
    finally:
        receiver.stop()


def test_env_faults_apply_to_every_task_and_tasks_can_override(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim(faults=("duplicate=2",))
    doubled = create(sim, receiver.url)
    single = create(sim, receiver.url, **faults("duplicate=1"))
    receiver.wait_for(2, doubled)
    receiver.wait_for(1, single)
    wait_for(lambda: log_of(sim, single)["callback_succeeded"] and log_of(sim, doubled)["callback_succeeded"])
    assert len(receiver.for_task(single)) == 1


def test_completed_by_hand_sends_that_response(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim(completion_delay=3600.0)
    task_id = create(sim, receiver.url, "transcription")
    response = {"fields": {"title": "Hacker News", "top_result": "Show HN"}}
    answer = requests.post(
        f"{sim.api_url}/task/{task_id}/complete", json={"response": response}, auth=(API_TEST_KEY, ""), timeout=10
    )
    assert answer.status_code == 200
    [callback] = receiver.wait_for(1, task_id)
    assert callback.body is not None and callback.body["response"] == response


def test_live_tasks_complete_and_call_back_too(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    task_id = create(sim, receiver.url, "audiotranscription", key=API_LIVE_KEY)
    [callback] = receiver.wait_for(1, task_id)
    assert callback.body is not None
    assert callback.body["task"]["is_test"] is False
    assert set(callback.body["response"]) == {"transcript", "duration"}


def test_every_type_calls_back_with_a_response_of_its_shape(start_sim: StartSim, receiver: Receiver) -> None:
    sim = start_sim()
    expected = {
        "categorization": {"category"},
        "transcription": {"fields"},
        "phonecall": {"outcome", "fields", "choice"},
        "comparison": {"choice"},
        "annotation": {"annotations"},
        "datacollection": {"fields"},
        "audiotranscription": {"transcript", "duration"},
    }
    ids = {task_type: create(sim, receiver.url, task_type) for task_type in expected}
    for task_type, task_id in ids.items():
        [callback] = receiver.wait_for(1, task_id)
        assert callback.body is not None and set(callback.body["response"]) == expected[task_type]


def test_a_pending_delivery_survives_a_restart(start_sim: StartSim, receiver: Receiver) -> None:
    receiver.respond_with(500)
    first = start_sim(time_scale=0.1)  # the retry is due 1 s after the failed try
    task_id = create(first, receiver.url)
    [failed] = receiver.wait_for(1, task_id)
    wait_for(lambda: log_of(first, task_id)["attempts"])
    first.stop()
    assert len(receiver.for_task(task_id)) == 1

    second = start_sim(time_scale=0.1)
    assert get(second, f"task/{task_id}")["status"] == "completed"
    _, retried = receiver.wait_for(2, task_id)
    assert retried.at - failed.at >= 1.0 - 0.05  # it kept its next-attempt time
    assert retried.body == failed.body
    log = outcome_of(second, task_id, True)
    assert [(a["attempt"], a["status_code"]) for a in log["attempts"]] == [(1, 500), (2, 200)]


def test_a_pending_completion_survives_a_restart(
    make_settings: Callable[..., SimSettings], start_sim: StartSim, receiver: Receiver
) -> None:
    settings = make_settings(completion_delay=0.2)
    first = SimServer(settings, start_scheduler=False).start()  # stopped before anything could complete
    try:
        task_id = create(first, receiver.url, "comparison")
        created = get(first, f"task/{task_id}")
    finally:
        first.stop()
    assert created["status"] == "pending"

    second = start_sim(settings)
    [callback] = receiver.wait_for(1, task_id)
    assert callback.body is not None and callback.body["task"]["created_at"] == created["created_at"]
    assert get(second, f"task/{task_id}")["status"] == "completed"


def test_run_pending_does_the_work_without_threads(
    make_settings: Callable[..., SimSettings], receiver: Receiver
) -> None:
    app = create_app(make_settings())
    sim: Simulator = app.extensions["scale_sim"]
    try:
        client = app.test_client()
        answer = client.post(
            "/v1/task/datacollection",
            json=json_body(receiver.url, "datacollection"),
            headers=basic_auth(API_TEST_KEY),
        )
        task_id = answer.get_json()["task_id"]
        assert not sim.running
        sim.run_pending()
        assert len(receiver.for_task(task_id)) == 1  # sent in this thread: no waiting needed
        assert sim.store.get_task(task_id)["callback_succeeded"] is True
    finally:
        sim.close()

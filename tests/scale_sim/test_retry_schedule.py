"""The pure parts of delivery: the retry schedule, the deliveries a task's faults plan, the body and keys."""

from __future__ import annotations

import json

import pytest

from scale_sim import defaults
from scale_sim.delivery import callback_body, plan_deliveries, retry_delay, wrong_key_for
from scale_sim.faults import Faults


def test_twenty_tries_span_24_hours_with_growing_gaps() -> None:
    assert defaults.MAX_ATTEMPTS == 20
    assert len(defaults.RETRY_DELAYS) == 19
    assert sum(defaults.RETRY_DELAYS) == 24 * 3600
    assert list(defaults.RETRY_DELAYS) == sorted(defaults.RETRY_DELAYS)


def test_retry_delay_follows_the_schedule_and_the_time_scale() -> None:
    assert retry_delay(1, 1.0) == 10
    assert retry_delay(19, 1.0) == defaults.RETRY_DELAYS[-1]
    assert retry_delay(2, 0.001) == pytest.approx(0.03)
    assert retry_delay(3, 0.0) == 0


@pytest.mark.parametrize("attempts", [0, 20, 21])
def test_no_retry_outside_the_twenty_tries(attempts: int) -> None:
    assert retry_delay(attempts, 1.0) is None


def test_a_plain_task_gets_one_pending_delivery_now() -> None:
    [plan] = plan_deliveries("http://r/cb", Faults(), now=100.0)
    assert (plan.copy, plan.state, plan.next_attempt_at, plan.wrong_key, plan.held_since) == (
        1,
        "pending",
        100.0,
        False,
        None,
    )


def test_faults_shape_the_plan() -> None:
    copies = plan_deliveries("http://r/cb", Faults(duplicate=3, wrong_key=True, delay=2.5), now=100.0)
    assert [p.copy for p in copies] == [1, 2, 3]
    assert all(p.wrong_key and p.next_attempt_at == 102.5 for p in copies)
    [held] = plan_deliveries("http://r/cb", Faults(reorder=True), now=100.0)
    assert held.state == "held" and held.held_since == 100.0
    [dropped] = plan_deliveries("http://r/cb", Faults(drop=True, duplicate=4), now=100.0)
    assert dropped.state == "dropped" and dropped.next_attempt_at is None


def test_callback_body_is_the_documented_envelope() -> None:
    task = {"task_id": "576c41bf13e36b0600b02b34", "response": {"category": "red"}, "type": "categorization"}
    task["status"] = "completed"
    assert json.loads(callback_body(task)) == {
        "task_id": task["task_id"],
        "status": "completed",
        "response": task["response"],
        "task": task,
    }


@pytest.mark.parametrize("key", ["", "k", "live-callback-key"])
def test_the_wrong_key_is_never_the_key_nor_empty(key: str) -> None:
    wrong = wrong_key_for(key)
    assert wrong and wrong != key
    assert wrong == wrong_key_for(key)

"""Fault specs: what each means, how the env list and a task's own list combine, and what is refused."""

from __future__ import annotations

import pytest

from scale_sim.exceptions import FaultSpecError
from scale_sim.faults import Faults, effective_faults, parse_fault_list, parse_faults


def test_each_fault_parses() -> None:
    assert parse_faults(["duplicate", "reorder", "wrong_key", "delay=0.5", "drop", "oversize"]) == {
        "duplicate": 2,
        "reorder": True,
        "wrong_key": True,
        "delay": 0.5,
        "drop": True,
        "oversize": True,
    }


def test_duplicate_takes_a_count() -> None:
    assert Faults.from_values(parse_faults(["duplicate=3"])).duplicate == 3


def test_a_comma_separated_string_or_a_list() -> None:
    assert parse_fault_list("wrong_key, delay=2") == {"wrong_key": True, "delay": 2.0}
    assert parse_fault_list(["wrong_key"]) == {"wrong_key": True}
    assert parse_fault_list("") == {}


def test_the_task_list_overrides_the_environment() -> None:
    faults = effective_faults({"duplicate": 3, "wrong_key": True}, {"duplicate": 1, "delay": 1.0})
    assert faults == Faults(duplicate=1, wrong_key=True, delay=1.0)
    assert faults.describe() == ["wrong_key", "delay=1"]


def test_no_faults_means_one_plain_delivery() -> None:
    assert effective_faults({}, {}) == Faults()
    assert Faults().describe() == []


@pytest.mark.parametrize(
    "spec",
    [
        "explode",
        "Drop",
        "drop=yes",
        "reorder=1",
        "duplicate=0",
        "duplicate=many",
        "duplicate=1000",
        "delay",
        "delay=-1",
        "delay=soon",
        "delay=inf",
    ],
)
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_faults([spec])


@pytest.mark.parametrize("value", [3, {"drop": True}, ["drop", 1], None])
def test_sim_faults_must_be_a_list_or_string(value: object) -> None:
    with pytest.raises(FaultSpecError):
        parse_fault_list(value)

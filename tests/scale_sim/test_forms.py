"""Form bodies as curl sends them: repeated keys become lists, brackets nest."""

from __future__ import annotations

import pytest

from scale_sim.exceptions import InvalidRequestError
from scale_sim.forms import parse_form, split_key


def test_repeated_keys_become_a_list() -> None:
    assert parse_form([("categories", "public"), ("categories", "private")]) == {"categories": ["public", "private"]}


def test_a_single_key_stays_a_string() -> None:
    assert parse_form([("attachment", "car")]) == {"attachment": "car"}


def test_brackets_nest_objects() -> None:
    form = [("fields[title]", "Title of Webpage"), ("fields[top_result]", "Title of the top result")]
    assert parse_form(form) == {"fields": {"title": "Title of Webpage", "top_result": "Title of the top result"}}


def test_indexed_brackets_nest_with_string_indexes() -> None:
    form = [
        ("examples[0][correct]", "true"),
        ("examples[0][image]", "a.jpg"),
        ("examples[1][correct]", "false"),
    ]
    assert parse_form(form) == {"examples": {"0": {"correct": "true", "image": "a.jpg"}, "1": {"correct": "false"}}}


def test_empty_brackets_append() -> None:
    assert parse_form([("categories[]", "a")]) == {"categories": ["a"]}
    assert parse_form([("categories[]", "a"), ("categories[]", "b")]) == {"categories": ["a", "b"]}
    assert parse_form([("categories", "a"), ("categories[]", "b")]) == {"categories": ["a", "b"]}


def test_numeric_object_keys_stay_keys() -> None:
    assert parse_form([("category_ids[123]", "Blue Cross")]) == {"category_ids": {"123": "Blue Cross"}}


def test_split_key() -> None:
    assert split_key("examples[0][correct]") == ["examples", "0", "correct"]
    assert split_key("a") == ["a"]
    assert split_key("a[]") == ["a", ""]


@pytest.mark.parametrize("key", ["fields[title", "fields]x[", "fields[a]b", "[x]", "a[b[c]]", "a[][b]", ""])
def test_malformed_names_are_refused(key: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_form([(key, "v")])


def test_too_deep_nesting_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="deeper"):
        parse_form([("a[b][c][d][e][f]", "v")])


@pytest.mark.parametrize(
    "items",
    [
        [("fields", "x"), ("fields[a]", "y")],
        [("fields[a]", "y"), ("fields", "x")],
        [("fields[a]", "y"), ("fields[]", "x")],
        [("fields[a]", "y"), ("fields[a][b]", "z")],
    ],
)
def test_a_name_used_both_as_value_and_object_is_refused(items: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidRequestError, match="both"):
        parse_form(items)

"""Cloud Tasks task ids from logical task names: valid, deterministic, and distinct for distinct names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.cloud_tasks import MAX_TASK_ID, task_id

VALID = re.compile(r"[A-Za-z0-9_-]{1,500}")


@pytest.mark.parametrize("name", ["draft-wf-123", "send_0", "A" * MAX_TASK_ID, "x"])
def test_a_valid_name_is_kept_as_is(name):
    assert task_id(name) == name


@pytest.mark.parametrize("name", ["draft:wf-123", "https://example.com/a?b=c", "émile", "a b", "A" * 501, "///"])
def test_any_other_name_becomes_a_valid_id(name):
    result = task_id(name)
    assert VALID.fullmatch(result), result
    assert result != name


def test_the_readable_part_survives_sanitizing():
    assert task_id("draft:wf-123").startswith("draft-wf-123-")


def test_the_same_name_always_gives_the_same_id():
    assert task_id("send:wf 9/attempt#1") == task_id("send:wf 9/attempt#1")


def test_names_differing_only_in_invalid_characters_get_different_ids():
    assert task_id("a:b") != task_id("a/b")
    assert task_id("a:b") != task_id("a-b")  # "a-b" is valid, so it is kept; "a:b" carries a hash


def test_long_names_sharing_a_prefix_get_different_ids():
    prefix = "x" * 600
    first, second = task_id(prefix + "1"), task_id(prefix + "2")
    assert first != second
    assert len(first) <= MAX_TASK_ID and len(second) <= MAX_TASK_ID


def test_an_empty_name_is_refused():
    with pytest.raises(ValueError):
        task_id("")


@given(st.text(min_size=1, max_size=700))
def test_every_name_maps_to_a_valid_deterministic_id(name):
    result = task_id(name)
    assert VALID.fullmatch(result)
    assert task_id(name) == result


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_distinct_names_get_distinct_ids(a, b):
    if a != b:
        assert task_id(a) != task_id(b)

"""How deep free-form JSON nests (``nesting_exceeds``): the level-at-a-time
count agrees with the plain recursive definition on any JSON value."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from trioscope.wire import nesting_exceeds

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=3)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner, max_size=4),
    max_leaves=40,
)


def depth(value: Any) -> int:
    """Objects and lists nested in ``value``, counting ``value`` itself (0 for a scalar)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(json_values, st.integers(min_value=0, max_value=8))
def test_agrees_with_the_recursive_depth(value: Any, limit: int) -> None:
    value = orjson.loads(orjson.dumps(value))  # what a body parses to
    assert nesting_exceeds(value, limit) is (depth(value) > limit)


def test_a_deep_value_is_refused_without_recursion() -> None:
    value: Any = 1
    for level in range(100_000):
        value = [value] if level % 2 else {"k": value}
    assert nesting_exceeds(value, 32)
    assert not nesting_exceeds(value, 100_000)


def test_wide_values_are_measured_by_their_deepest_member() -> None:
    pairs = [[1, 2]] * 10_000 + [[[[3]]]]
    assert not nesting_exceeds(pairs, 4)
    assert nesting_exceeds(pairs, 3)
    assert not nesting_exceeds({"a": 1, "b": "x", "c": None}, 1)
    assert nesting_exceeds({"a": {}}, 1)
    assert not nesting_exceeds("text", 0)
    assert nesting_exceeds([], 0)

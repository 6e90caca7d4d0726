"""The fast converter's structure functions (checks inline) build what cattrs'
own generated functions build, and refuse what they refuse."""

from __future__ import annotations

import copy
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.synthetic import host_report
from trioscope.wire._codec import _DETAILED, CONVERTER
from trioscope.wire._inline_structure import _plain, inline_structure_fn
from trioscope.wire import _models as wire_models
from trioscope.wire._models import Report

EDGE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300), st.just(""), st.just("8fb242afec93"), st.just("-bad id"), st.just([]), st.just({}),
    st.just("2025-10-01T00:00:00Z"), st.sampled_from(["tcp", "udp6", "TCP", "tcp "]),  # a protocol (a literal) or not
)


def _document() -> dict[str, Any]:
    doc = host_report(3, timestamp=1_760_000_000.0, peers=[4], containers=2, processes=3, connections=3)
    doc["processes_info"]["processes"][0]["container_id"] = "8fb242afec93"
    return doc


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every (container, key) path to a scalar or section in ``value``."""
    found = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return found
    for key, item in items:
        found.append((*path, key))
        found.extend(_paths(item, (*path, key)))
    return found


PATHS = _paths(_document())


def _outcome(converter: Any, document: dict[str, Any]) -> Any:
    try:
        return converter.structure(document, Report)
    except Exception:  # noqa: BLE001 - which exception differs by converter; that one fails is the point
        return "refused"


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from(PATHS), EDGE_VALUES), max_size=3), st.booleans())
def test_fast_structure_agrees_with_the_detailed_converter(changes, drop):
    document = copy.deepcopy(_document())
    for path, value in changes:
        parent: Any = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            if drop and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced what this path went through
    assert _outcome(CONVERTER, document) == _outcome(_DETAILED, document)


def test_a_valid_report_decodes_alike():
    document = _document()
    assert CONVERTER.structure(document, Report) == _DETAILED.structure(document, Report)


def test_every_wire_model_is_filled_slot_by_slot():
    """The decoding's fast path (values straight into slots) is taken for every model of reports and registrations."""
    models = [value for value in vars(wire_models).values()
              if attrs.has(value) and value.__module__ == wire_models.__name__]
    assert {"Report", "ProcessInfo", "Connection", "ContainerInfo"} <= {model.__name__ for model in models}
    assert [model for model in models if not _plain(model)] == []


@attrs.frozen(kw_only=True)
class _Checked:
    name: str = attrs.field(validator=attrs.validators.max_len(3))
    tags: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class _Finished:
    name: str
    seen: list[str] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self.seen.append(self.name)


@pytest.mark.parametrize("model", [_Checked, _Finished])
def test_a_model_whose_init_does_more_is_built_through_it(model):
    structure = inline_structure_fn(model, CONVERTER, TypeError)
    assert not _plain(model)
    assert structure({"name": "abc"}, model) == model(name="abc")
    if model is _Checked:
        with pytest.raises(ValueError, match="Length of 'name'"):
            structure({"name": "abcd"}, model)
    else:
        assert structure({"name": "abc"}, model).seen == ["abc"]


def test_absent_fields_get_their_defaults_each_its_own():
    structure = inline_structure_fn(_Plain, CONVERTER, TypeError)
    first, second = structure({}, _Plain), structure({}, _Plain)
    assert first == _Plain() and first.tags is not second.tags
    assert structure({"count": 2, "tags": ["a"]}, _Plain) == _Plain(count=2, tags=["a"])
    with pytest.raises(TypeError):
        structure([], _Plain)


@attrs.frozen(kw_only=True)
class _Plain:
    count: int = 1
    tags: list[str] = attrs.field(factory=list)

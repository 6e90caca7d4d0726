"""Strict decoding of wire JSON into the report models, and encoding back.

cattrs' default hooks coerce silently (``"5"`` becomes 5, ``None`` becomes
``"None"``); here every primitive must already have its JSON type, constrained
types are checked, and every problem is reported with its path.
"""

from __future__ import annotations

import math
from datetime import datetime
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn
from cattrs.v import format_exception, transform_error

from ._fields import (
    CHECKS, FieldError, FloatRange, IntRange, JsonRule, ListRule, Rule, TextRule, format_timestamp, parse_timestamp,
)
from ._inline_structure import inline_structure_fn
from ._models import AgentHeartbeat, AgentRegistration, Report

T = TypeVar("T")


@attrs.frozen
class FieldProblem:
    path: str
    """JSONPath of the bad value, e.g. ``$.host_info.cpu_info.cores``."""
    message: str


class InvalidDocument(ValueError):
    """The document does not match the schema; ``problems`` says where and why."""

    def __init__(self, problems: tuple[FieldProblem, ...]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first.path}: {first.message}{more}")
        self.problems = problems


def _strict_int(value: Any, _type: Any) -> int:
    if type(value) is not int:
        if type(value) is float and value.is_integer() and abs(value) >= 2**63:  # orjson reads these as floats
            raise FieldError("must be an integer between -2^63 and 2^63-1")
        raise FieldError(f"must be an integer, got {_describe(value)}")
    return value


def _strict_float(value: Any, _type: Any) -> float:
    if type(value) not in (int, float):
        raise FieldError(f"must be a number, got {_describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise FieldError("must be a finite number")
    return number


def _strict_str(value: Any, _type: Any) -> str:
    if type(value) is not str:
        raise FieldError(f"must be a string, got {_describe(value)}")
    return value


def _strict_bool(value: Any, _type: Any) -> bool:
    if type(value) is not bool:
        raise FieldError(f"must be true or false, got {_describe(value)}")
    return value


def _timestamp(value: Any, _type: Any) -> datetime:
    return parse_timestamp(_strict_str(value, str))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _not_an_object(value: Any) -> FieldError:
    return FieldError(f"must be an object, got {_describe(value)}")


def _rule_hook(rule: Rule, base: Any, converter: cattrs.Converter) -> Any:
    """One structure hook per constrained type: the common case (right JSON type,
    within limits) is a single inline test; anything else goes the slow way to
    raise the error that names what is allowed. Decoding a report is mostly
    these hooks, so their cost is the request path's cost."""
    if isinstance(rule, IntRange):
        low, high = rule.low, rule.high

        def int_hook(value: Any, _type: Any) -> Any:
            if type(value) is int and low <= value <= high:
                return value
            return rule.check(_strict_int(value, None))

        return int_hook
    if isinstance(rule, FloatRange):
        flow, fhigh = rule.low, rule.high

        def float_hook(value: Any, _type: Any) -> Any:
            kind = type(value)
            if (kind is float or kind is int) and flow <= value <= fhigh:
                return float(value)
            return rule.check(_strict_float(value, None))

        return float_hook
    if isinstance(rule, TextRule):
        limit, pattern, plain = rule.max_length, rule.pattern, rule.valid is None

        def text_hook(value: Any, _type: Any) -> Any:
            if plain and type(value) is str and len(value) <= limit and (pattern is None or pattern.fullmatch(value)):
                return value
            return rule.check(_strict_str(value, None))

        return text_hook
    if isinstance(rule, JsonRule):
        def json_hook(value: Any, _type: Any) -> Any:
            return rule.check(value)

        return json_hook
    inner = converter.get_structure_hook(base)
    if isinstance(rule, ListRule):
        max_items = rule.max_items

        def list_hook(value: Any, _type: Any) -> Any:
            if type(value) is not list:
                raise FieldError(f"must be a list, got {_describe(value)}")
            if len(value) > max_items:
                rule.check(value)
            return inner(value, base)

        return list_hook

    def map_hook(value: Any, _type: Any) -> Any:
        if type(value) is not dict:
            raise FieldError(f"must be an object, got {_describe(value)}")
        return rule.check(inner(value, base))

    return map_hook


def _make_converter(detailed: bool) -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=detailed, forbid_extra_keys=False)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(datetime, _timestamp)
    converter.register_unstructure_hook(datetime, format_timestamp)
    # Looked up when a type is first structured, so constrained types declared
    # after this module (by other wire models) are checked too.
    converter.register_structure_hook_factory(
        lambda type_: type_ in CHECKS,
        lambda type_: _rule_hook(CHECKS[type_], type_.__supertype__, converter),
    )

    # ``X | None``: resolve X's hook once rather than dispatching per value.
    def optional_factory(type_: Any) -> Any:
        inner_type = next(a for a in get_args(type_) if a is not type(None))
        inner = converter.get_structure_hook(inner_type)

        def hook(value: Any, _type: Any) -> Any:
            return None if value is None else inner(value, inner_type)

        return hook

    def is_optional(type_: Any) -> bool:
        args = get_args(type_)
        return len(args) == 2 and type(None) in args and get_origin(type_) in (Union, UnionType)

    converter.register_structure_hook_factory(is_optional, optional_factory)

    # A section (an attrs class) must come as a JSON object: cattrs would
    # otherwise report a string where a section belongs as missing fields.
    def object_hook_factory(cls: type[Any]) -> Any:
        if not detailed:
            return inline_structure_fn(cls, converter, _not_an_object)
        inner = make_dict_structure_fn(cls, converter)

        def hook(value: Any, _type: Any) -> Any:
            if type(value) is not dict:
                raise _not_an_object(value)
            return inner(value, _type)

        return hook

    converter.register_structure_hook_factory(attrs.has, object_hook_factory)
    return converter


CONVERTER = _make_converter(detailed=False)
"""Fast: stops at the first problem. Valid documents (nearly all) take this path."""
_DETAILED = _make_converter(detailed=True)
"""Slow: collects every problem with its path; only run once a document failed."""


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, FieldError):
        return str(exc)
    if isinstance(exc, KeyError):
        return "is required"
    if get_origin(type_) is Literal:
        allowed = ", ".join(str(a) for a in get_args(type_))
        return f"must be one of {allowed}"
    return format_exception(exc, type_)


def decode(document: Any, cls: type[T]) -> T:
    """Structure a parsed JSON document into ``cls``.

    Raises:
        InvalidDocument: with one problem per bad field (all of them).
    """
    if not isinstance(document, dict):
        raise InvalidDocument((FieldProblem("$", f"must be a JSON object, got {_describe(document)}"),))
    try:
        return CONVERTER.structure(document, cls)
    except Exception:  # noqa: BLE001, S110 - any failure: find every problem, with paths
        pass
    try:
        return _DETAILED.structure(document, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        problems = []
        for line in transform_error(exc, "$", _format):
            message, _, path = line.rpartition(" @ ")
            problems.append(FieldProblem(path, message))
        _forget_frames(exc)
        raise InvalidDocument(tuple(problems)) from None
    except FieldError as exc:
        raise InvalidDocument((FieldProblem("$", str(exc)),)) from None


def _forget_frames(error: BaseException) -> None:
    """Drop the tracebacks of ``error`` and of every exception it groups.

    cattrs keeps each field's exception in a list of the frame that caught
    it, which that exception's traceback holds: reference cycles, holding the
    document and everything decoded of it (a 10 MB invalid report: ~4 MB)
    until the collector's next full pass, rare in the server."""
    error.__traceback__ = None
    for inner in getattr(error, "exceptions", ()):
        _forget_frames(inner)


def decode_report(document: Any) -> Report:
    return decode(document, Report)


def decode_registration(document: Any) -> AgentRegistration:
    return decode(document, AgentRegistration)


def decode_heartbeat(document: Any) -> AgentHeartbeat:
    return decode(document, AgentHeartbeat)


def encode(value: Any) -> Any:
    """The JSON-ready form of a model (what a probe sends)."""
    return CONVERTER.unstructure(value)

"""Strict decoding of wire JSON into the report models, and encoding back.

cattrs' default hooks coerce silently (``"5"`` becomes 5, ``None`` becomes
``"None"``); here every primitive must already have its JSON type, constrained
types are checked, and every problem is reported with its path.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn
from cattrs.v import format_exception, transform_error

from ._fields import CHECKS, FieldError, format_timestamp, parse_timestamp
from ._models import AgentRegistration, Report

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
        raise FieldError(f"must be an integer, got {_describe(value)}")
    return value


def _strict_float(value: Any, _type: Any) -> float:
    if type(value) not in (int, float):
        raise FieldError(f"must be a number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise FieldError("must be a finite number")
    return value


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


def _expect(kind: type, what: str) -> Any:
    def check(value: Any) -> None:
        if not isinstance(value, kind):
            raise FieldError(f"must be {what}, got {_describe(value)}")

    return check


_expect_object = _expect(dict, "an object")
_expect_list = _expect(list, "a list")


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(datetime, _timestamp)
    converter.register_unstructure_hook(datetime, format_timestamp)

    # Constrained types: check the JSON type (cattrs would iterate a string as a
    # list, or call .items() on a list), build the base value, then the limits.
    for new_type, (base, check) in CHECKS.items():
        if base in (int, float, str):
            primitive = {int: _strict_int, float: _strict_float, str: _strict_str}[base]

            def hook(value: Any, _type: Any, check: Any = check, primitive: Any = primitive) -> Any:
                return check(primitive(value, None))
        else:
            expect = _expect_object if getattr(base, "__origin__", None) is dict else _expect_list
            inner = converter.get_structure_hook(base)

            def hook(value: Any, _type: Any, check: Any = check, expect: Any = expect,
                     inner: Any = inner, base: Any = base) -> Any:
                expect(value)
                return check(inner(value, base))

        converter.register_structure_hook(new_type, hook)

    # A section (an attrs class) must come as a JSON object: cattrs would
    # otherwise report a string where a section belongs as missing fields.
    def object_hook_factory(cls: type) -> Any:
        inner = make_dict_structure_fn(cls, converter)

        def hook(value: Any, _type: Any) -> Any:
            _expect_object(value)
            return inner(value, _type)

        return hook

    converter.register_structure_hook_factory(attrs.has, object_hook_factory)
    return converter


CONVERTER = _make_converter()


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
    except (ClassValidationError, IterableValidationError) as exc:
        problems = []
        for line in transform_error(exc, "$", _format):
            message, _, path = line.rpartition(" @ ")
            problems.append(FieldProblem(path, message))
        raise InvalidDocument(tuple(problems)) from None
    except FieldError as exc:
        raise InvalidDocument((FieldProblem("$", str(exc)),)) from None


def decode_report(document: Any) -> Report:
    return decode(document, Report)


def decode_registration(document: Any) -> AgentRegistration:
    return decode(document, AgentRegistration)


def encode(value: Any) -> Any:
    """The JSON-ready form of a model (what a probe sends)."""
    return CONVERTER.unstructure(value)

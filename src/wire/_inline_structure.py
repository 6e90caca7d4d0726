"""A model's structure function with its scalar fields' checks written inline.

Decoding a report is ~300 small objects of a dozen fields each, and cattrs'
generated function calls one hook per field: at ~0.1 us a call that was a
quarter of the decoding (and of the request path's CPU with it). Here each
constrained scalar field (``IntRange``, ``FloatRange``, ``TextRule``, and
such a field or null) is tested where it is read, with exactly the test its
hook starts with; any value that test does not accept goes to that hook,
which returns what it would have or raises what it would have. Every other
field (lists, sections, literals, timestamps) is its hook's, as before. So the
function returns what ``make_dict_structure_fn`` builds, field by field, and
fails where it fails (the caller then finds every problem with the detailed
converter: ``_codec.decode``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import UnionType
from typing import Any, Union, get_args, get_origin

import attrs
import cattrs

from ._fields import CHECKS, FloatRange, IntRange, TextRule


def inline_structure_fn(cls: type[Any], converter: cattrs.Converter, not_an_object: Callable[[Any], Exception]) -> Any:
    """``make_dict_structure_fn(cls, converter)``'s equivalent for the fast
    converter (``forbid_extra_keys=False``, no detailed validation), which
    first raises ``not_an_object(value)`` for a value that is no JSON object
    (a section must be one: one call less per object than a wrapping hook)."""
    attrs.resolve_types(cls)
    namespace: dict[str, Any] = {"__cl": cls, "not_an_object": not_an_object}
    lines = ["def structure(o, _):", "    if type(o) is not dict:", "        raise not_an_object(o)", "    res = {}"]
    for index, field in enumerate(attrs.fields(cls)):
        if not field.init:
            continue
        key, hook, kind = field.name, f"h{index}", f"t{index}"
        namespace[hook] = converter.get_structure_hook(field.type)
        namespace[kind] = field.type
        value = f"o[{key!r}]"
        indent = "    "
        if field.default is not attrs.NOTHING:  # absent: the class's default, as cattrs leaves it
            lines.append(f"    if {key!r} in o:")
            indent = "        "
        test = _fast_test(field.type, namespace, index)
        if test is None:
            lines.append(f"{indent}res[{field.alias!r}] = {hook}({value}, {kind})")
        else:
            accepted, result = test
            lines += [
                f"{indent}v = {value}",
                f"{indent}res[{field.alias!r}] = {result} if {accepted} else {hook}(v, {kind})",
            ]
    lines.append("    return __cl(**res)")
    exec("\n".join(lines), namespace)  # noqa: S102 - code built above from the model's own field names
    return namespace["structure"]


def _fast_test(type_: Any, namespace: dict[str, Any], index: int) -> tuple[str, str] | None:
    """(test, result) for ``v`` of a constrained scalar type (or one or null),
    the same as its hook's first test (``_codec._rule_hook``); None for any other type."""
    optional = False
    args = get_args(type_)
    if len(args) == 2 and type(None) in args and get_origin(type_) in (Union, UnionType):
        type_ = next(a for a in args if a is not type(None))
        optional = True
    rule = CHECKS.get(type_)
    if isinstance(rule, IntRange):
        namespace[f"lo{index}"], namespace[f"hi{index}"] = rule.low, rule.high
        accepted, result = f"(type(v) is int and lo{index} <= v <= hi{index})", "v"
    elif isinstance(rule, FloatRange):
        namespace[f"lo{index}"], namespace[f"hi{index}"] = rule.low, rule.high
        accepted, result = f"(type(v) is float and lo{index} <= v <= hi{index})", "v"
    elif isinstance(rule, TextRule):
        namespace[f"max{index}"] = rule.max_length
        accepted, result = f"(type(v) is str and len(v) <= max{index})", "v"
        if rule.pattern is not None:
            namespace[f"pattern{index}"] = rule.pattern
            accepted = f"(type(v) is str and len(v) <= max{index} and pattern{index}.fullmatch(v))"
    else:
        return None
    if optional:
        accepted = f"(v is None or {accepted})"
    return accepted, result

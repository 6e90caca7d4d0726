"""A model's structure function with its scalar fields' checks written inline.

Decoding a report is ~300 small objects of a dozen fields each, and cattrs'
generated function calls one hook per field: at ~0.1 us a call that was a
quarter of the decoding (and of the request path's CPU with it). Here each
constrained scalar field (``IntRange``, ``FloatRange``, ``TextRule``, a
``Literal`` of strings, and such a field or null) is tested where it is read,
with exactly the test its hook starts with; any value that test does not
accept goes to that hook, which returns what it would have or raises what it
would have. Every other field (lists, sections, other literals, timestamps) is
its hook's, as before. So the
function returns what ``make_dict_structure_fn`` builds, field by field, and
fails where it fails (the caller then finds every problem with the detailed
converter: ``_codec.decode``).

The instance is made as ``__init__`` would make it, without calling it: a
frozen class's ``__init__`` sets every field through ``object.__setattr__``
after the values went through a dict of keyword arguments, ~20% of a
report's decoding; here each value goes straight into its slot (the slot's
own setter, as ``topology._model.Node.seen`` does). Only for a class that
does nothing else in ``__init__`` (no validators, converters or
``__attrs_post_init__``: ``_plain``); any other class is called as before.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MemberDescriptorType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import cattrs

from ._fields import CHECKS, FloatRange, IntRange, TextRule

_FACTORY: type[Any] = type(attrs.Factory(list))
"""The class of a field's ``factory=`` default (typed as a function in attrs' stubs)."""


def inline_structure_fn(cls: type[Any], converter: cattrs.Converter, not_an_object: Callable[[Any], Exception]) -> Any:
    """``make_dict_structure_fn(cls, converter)``'s equivalent for the fast
    converter (``forbid_extra_keys=False``, no detailed validation), which
    first raises ``not_an_object(value)`` for a value that is no JSON object
    (a section must be one: one call less per object than a wrapping hook)."""
    attrs.resolve_types(cls)
    namespace: dict[str, Any] = {"__cl": cls, "not_an_object": not_an_object, "__new": object.__new__}
    lines = ["def structure(o, _):", "    if type(o) is not dict:", "        raise not_an_object(o)"]
    plain = _plain(cls)
    lines.append("    res = __new(__cl)" if plain else "    res = {}")
    for index, field in enumerate(attrs.fields(cls)):
        if not field.init:
            continue
        key, hook, kind = field.name, f"h{index}", f"t{index}"
        namespace[hook] = converter.get_structure_hook(field.type)
        namespace[kind] = field.type
        if plain:
            namespace[f"set{index}"] = getattr(cls, field.name).__set__
            slot = f"set{index}(res, "
            close = ")"
        else:
            slot = f"res[{field.alias!r}] = "
            close = ""
        value = f"o[{key!r}]"
        indent = "    "
        if field.default is not attrs.NOTHING:  # absent: the class's default, as cattrs leaves it
            lines.append(f"    if {key!r} in o:")
            indent = "        "
        test = _fast_test(field.type, namespace, index)
        if test is None:
            lines.append(f"{indent}{slot}{hook}({value}, {kind}){close}")
        else:
            accepted, result = test
            lines += [f"{indent}v = {value}", f"{indent}{slot}{result} if {accepted} else {hook}(v, {kind}){close}"]
        if plain and field.default is not attrs.NOTHING:
            default: Any = field.default
            if isinstance(default, _FACTORY):
                namespace[f"default{index}"] = default.factory
                lines += ["    else:", f"        set{index}(res, default{index}())"]
            else:
                namespace[f"default{index}"] = default
                lines += ["    else:", f"        set{index}(res, default{index})"]
    lines.append("    return res" if plain else "    return __cl(**res)")
    exec("\n".join(lines), namespace)  # noqa: S102 - code built above from the model's own field names
    return namespace["structure"]


def _plain(cls: type[Any]) -> bool:
    """Whether ``cls``'s ``__init__`` only stores its arguments (or the
    defaults) in slots: then setting the slots makes the same instance."""
    if hasattr(cls, "__attrs_pre_init__") or hasattr(cls, "__attrs_post_init__"):
        return False
    for field in attrs.fields(cls):
        if field.validator is not None or field.converter is not None or field.on_setattr not in (None, attrs.NOTHING):
            return False
        if not isinstance(getattr(cls, field.name, None), MemberDescriptorType):
            return False  # not a slot (a dict class), or shadowed
        if not field.init and field.default is not attrs.NOTHING:
            return False  # its default would be set by __init__
        default: Any = field.default
        if isinstance(default, _FACTORY) and default.takes_self:
            return False
    return True


def _fast_test(type_: Any, namespace: dict[str, Any], index: int) -> tuple[str, str] | None:
    """(test, result) for ``v`` of a constrained scalar type or a literal of
    strings (or one or null): a value it accepts is one its hook
    (``_codec._rule_hook``, or cattrs' literal hook: ``v in`` the values)
    returns as it is, and any other goes to the hook; None for any other type."""
    optional = False
    args = get_args(type_)
    if len(args) == 2 and type(None) in args and get_origin(type_) in (Union, UnionType):
        type_ = next(a for a in args if a is not type(None))
        optional = True
    rule = CHECKS.get(type_)
    if get_origin(type_) is Literal and all(type(a) is str for a in get_args(type_)):
        namespace[f"allowed{index}"] = frozenset(get_args(type_))
        accepted, result = f"(type(v) is str and v in allowed{index})", "v"
    elif isinstance(rule, IntRange):
        namespace[f"lo{index}"], namespace[f"hi{index}"] = rule.low, rule.high
        accepted, result = f"(type(v) is int and lo{index} <= v <= hi{index})", "v"
    elif isinstance(rule, FloatRange):
        namespace[f"lo{index}"], namespace[f"hi{index}"] = rule.low, rule.high
        accepted, result = f"(type(v) is float and lo{index} <= v <= hi{index})", "v"
    elif isinstance(rule, TextRule) and rule.valid is None:
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

"""JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) of the wire models.

Derived from the same attrs classes and constrained types (``_fields.CHECKS``)
the strict decoder uses, so the API description cannot drift from what the
server accepts: a field's type, whether it is required (no default), its
ranges, lengths, patterns and list sizes. cattrs has no schema generator; this
walks the type hints the converter walks.
"""

from __future__ import annotations

import enum
import typing
from datetime import datetime
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from ._fields import CHECKS, FloatRange, IntRange, JsonRule, ListRule, MapRule, TextRule

Schema = dict[str, Any]


class SchemaBuilder:
    """Schemas of models, each attrs class once under ``$defs`` (``defs``),
    referred to as ``#/<prefix><Name>`` (OpenAPI: ``components/schemas/``)."""

    def __init__(self, prefix: str = "$defs/") -> None:
        self.prefix = prefix
        self.defs: dict[str, Schema] = {}
        self._names: dict[type[Any], str] = {}
        """Each model's name under ``defs``: two classes of one name (the
        probes' ``AgentRegistration`` and the command service's) are two
        schemas; keyed by name alone, the second's operations pointed at the first's."""

    def of(self, type_: Any) -> Schema:
        """The schema of ``type_``: an attrs class, a constrained type, a builtin, a union."""
        if type_ in CHECKS:
            return self._constrained(type_)
        if attrs.has(type_):
            return self._model(type_)
        origin, args = get_origin(type_), get_args(type_)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, UnionType):
            options = [self.of(a) for a in args if a is not NoneType]
            schema = options[0] if len(options) == 1 else {"anyOf": options}
            if NoneType in args:
                return {"anyOf": [schema, {"type": "null"}]}
            return schema
        if origin in (list, tuple, typing.Sequence) or type_ in (list, tuple):
            return {"type": "array", "items": self.of(args[0])} if args else {"type": "array"}
        if origin is dict or type_ is dict:
            return {"type": "object", "additionalProperties": self.of(args[1])} if args else {"type": "object"}
        if isinstance(type_, type) and issubclass(type_, enum.Enum):
            return {"enum": [member.value for member in type_]}
        return dict(_PRIMITIVES.get(type_, {}))

    def _constrained(self, type_: Any) -> Schema:
        rule = CHECKS[type_]
        if isinstance(rule, IntRange):
            return {"type": "integer", "minimum": rule.low, "maximum": rule.high}
        if isinstance(rule, FloatRange):
            return {"type": "number", "minimum": rule.low, "maximum": rule.high}
        if isinstance(rule, TextRule):
            schema: Schema = {"type": "string", "maxLength": rule.max_length}
            if rule.pattern is not None:
                schema["pattern"] = f"^(?:{rule.pattern.pattern})$"  # the decoder's fullmatch
                schema["description"] = rule.what
            return schema
        if isinstance(rule, ListRule):
            return {"type": "array", "items": self.of(rule.item), "maxItems": rule.max_items}
        if isinstance(rule, MapRule):
            return {"type": "object", "maxProperties": rule.max_items, "propertyNames": {"maxLength": rule.max_key},
                    "additionalProperties": {"type": "string", "maxLength": rule.max_value}}
        assert isinstance(rule, JsonRule)
        kind: Schema = _JSON_KINDS.get(rule.kind, {}) if rule.kind is not None else {}
        return {**kind, "description": f"free-form JSON, nested at most {rule.max_depth} levels"}

    def _name(self, cls: type[Any]) -> str:
        name = self._names.get(cls)
        if name is None:
            name = cls.__name__
            if name in self.defs:  # another class's: qualified by its package ("domain.commands": Commands...)
                package = cls.__module__.rpartition(".")[0]
                name = package.rpartition(".")[2].title() + name
                if name in self.defs:
                    raise ValueError(f"two models would be documented as {name}: rename one")
            self._names[cls] = name
        return name

    def _model(self, cls: type[Any]) -> Schema:
        name = self._name(cls)
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: a model that refers to itself ends here
            hints = typing.get_type_hints(cls)
            properties: Schema = {}
            required = []
            for field in attrs.fields(cls):
                properties[field.name] = self.of(hints[field.name])
                if field.default is attrs.NOTHING:
                    required.append(field.name)
            schema: Schema = {"type": "object", "properties": properties}
            if required:
                schema["required"] = required
            if cls.__doc__:
                schema["description"] = cls.__doc__.strip()
            self.defs[name] = schema
        return {"$ref": f"#/{self.prefix}{name}"}


_JSON_KINDS: dict[type, Schema] = {dict: {"type": "object"}, list: {"type": "array"}}

_PRIMITIVES: dict[Any, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    datetime: {"type": "string", "format": "date-time",
               "description": "RFC 3339 with a zone, not before 1970 (2025-10-13T00:00:00Z)"},
    object: {},
    Any: {},
}

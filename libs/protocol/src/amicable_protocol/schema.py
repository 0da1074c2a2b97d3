"""JSON Schema (draft 2020-12) of every wire type, derived from the attrs classes.

Run ``python -m amicable_protocol.schema [--out FILE]``. The document has no root type, only
``$defs``: one definition per attrs class (named like the class), ``MessageType``, one envelope
per message (``ClientInitMessage``, ``ServerAgentPartialMessage`` …) and the tagged unions
``ClientMessage`` / ``ServerMessage`` keyed on ``type``.

Mapping: ``str``/``int``/``float``/``bool``/``None`` to JSON types, ``Literal`` to ``enum``
(``const`` for one value), ``tuple[X, ...]`` to ``array``, ``dict[str, X]`` to ``object`` with
``additionalProperties``, ``Any`` to ``{}``, nested classes to ``$ref``; renamed fields use
their JSON key. A field is required when it has no default, or when it is a one-value
``Literal`` (a discriminator such as ``TextBlock.type``). Objects forbid extra keys: the
schema describes canonical messages (the client decoder is more lenient, see
``docs/protocol.md``). Output is sorted, so a staleness check can diff it.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import importlib.util
import inspect
import json
import sys
import types
import typing
from typing import Any, Literal, Union

import attrs

from . import http, messages, runtime
from ._validation import renamed_fields

__all__ = ["json_schema", "main"]

_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_PRIMITIVES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
#: Modules whose every attrs class is a wire type (``preview`` is optional).
_MODULES = ("messages", "runtime", "http", "preview")
#: Replaced by the per-type envelopes and the tagged unions.
_ENVELOPES = (messages.ClientMessage, messages.ServerMessage)
_JSON_SCALARS = (str, int, float, bool, type(None))


def _ref(cls: type[Any]) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{cls.__name__}"}


def _pascal(value: str) -> str:
    return "".join(part.capitalize() for part in value.split("_"))


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}
        self._done: dict[str, type[Any]] = {}

    def add_def(self, name: str, schema: dict[str, Any], owner: type[Any] | None = None) -> None:
        if name in self.defs:
            raise ValueError(f"two wire types are named {name!r}")
        self.defs[name] = schema
        if owner is not None:
            self._done[name] = owner

    def type_schema(self, hint: Any) -> dict[str, Any]:
        if hint is Any:
            return {}
        if hint in _PRIMITIVES:
            return {"type": _PRIMITIVES[hint]}
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is Literal:
            return _literal_schema(args)
        if origin in (Union, types.UnionType):
            return _union([self.type_schema(arg) for arg in args])
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self.type_schema(args[0])}
        if origin is dict and args and args[0] is str:
            return {"type": "object", "additionalProperties": self.type_schema(args[1])}
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            self.enum_def(hint)
            return _ref(hint)
        if isinstance(hint, type) and attrs.has(hint):
            self.class_def(hint)
            return _ref(hint)
        raise TypeError(f"no JSON Schema mapping for {hint!r}")

    def enum_def(self, cls: type[enum.Enum]) -> None:
        if self._done.get(cls.__name__) is cls:
            return
        values = [member.value for member in cls]
        schema = {"type": "string", "enum": values}
        self.add_def(cls.__name__, _describe(schema, cls), cls)

    def class_def(self, cls: type[Any]) -> None:
        if self._done.get(cls.__name__) is cls:
            return
        self._done[cls.__name__] = cls  # before recursing: classes may nest each other
        schema = self.object_schema(cls)
        del self._done[cls.__name__]
        self.add_def(cls.__name__, _describe(schema, cls), cls)

    def object_schema(
        self, cls: type[Any], overrides: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        renames = renamed_fields.get(cls, {})
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            key = renames.get(field.name, field.name)
            hint = hints[field.name]
            if overrides and field.name in overrides:
                prop = overrides[field.name]
            else:
                prop = self.type_schema(hint)
                default = _json_default(field.default)
                if default is not _NO_DEFAULT:
                    prop = {**prop, "default": default}
            properties[key] = prop
            if field.default is attrs.NOTHING or _is_discriminator(hint):
                required.append(key)
        return {
            "type": "object",
            "properties": properties,
            "required": sorted(required),
            "additionalProperties": False,
        }


_NO_DEFAULT = object()


def _json_default(default: Any) -> Any:
    if default is attrs.NOTHING or isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return _NO_DEFAULT
    if isinstance(default, tuple):
        if all(isinstance(item, _JSON_SCALARS) for item in default):
            return list(default)
        return _NO_DEFAULT
    if isinstance(default, _JSON_SCALARS):
        return default
    return _NO_DEFAULT


def _is_discriminator(hint: Any) -> bool:
    return typing.get_origin(hint) is Literal and len(typing.get_args(hint)) == 1


def _literal_schema(values: tuple[Any, ...]) -> dict[str, Any]:
    kinds = sorted({_PRIMITIVES[type(v)] for v in values})
    schema: dict[str, Any] = {"type": kinds[0] if len(kinds) == 1 else kinds}
    if len(values) == 1:
        schema["const"] = values[0]
    else:
        schema["enum"] = list(values)
    return schema


def _union(options: list[dict[str, Any]]) -> dict[str, Any]:
    if all(set(option) == {"type"} and isinstance(option["type"], str) for option in options):
        return {"type": [option["type"] for option in options]}
    return {"anyOf": options}


def _describe(schema: dict[str, Any], obj: type[Any]) -> dict[str, Any]:
    doc = obj.__doc__
    return {**schema, "description": inspect.cleandoc(doc)} if doc else schema


def _wire_classes() -> list[type[Any]]:
    found: list[type[Any]] = []
    for name in _MODULES:
        module_name = f"{__package__}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if attrs.has(obj) and obj.__module__ == module_name and obj not in _ENVELOPES:
                found.append(obj)
    return found


def _envelopes(builder: _Builder) -> None:
    client_data = messages._CLIENT_DATA
    for direction, table, envelope in (
        ("Client", client_data, messages.ClientMessage),
        ("Server", messages.SERVER_DATA, messages.ServerMessage),
    ):
        variants = []
        for mtype in sorted(table, key=str):
            name = f"{direction}{_pascal(str(mtype))}Message"
            overrides = {
                "type": {"type": "string", "const": str(mtype)},
                "data": builder.type_schema(table[mtype]),
            }
            schema = builder.object_schema(envelope, overrides)
            # The server always sends the whole envelope; clients may omit ``id``/``timestamp``.
            always = schema["properties"] if direction == "Server" else ("type", "data")
            schema["required"] = sorted({*schema["required"], *always})
            builder.add_def(name, {**schema, "description": f"{direction} message '{mtype}'."})
            variants.append({"$ref": f"#/$defs/{name}"})
        union = {"oneOf": variants}
        builder.add_def(envelope.__name__, _describe(union, envelope))


def json_schema() -> dict[str, Any]:
    """The JSON Schema document of every wire type (deterministic for a given source)."""
    builder = _Builder()
    builder.enum_def(messages.MessageType)
    _envelopes(builder)
    for cls in _wire_classes():
        builder.class_def(cls)
    return {
        "$schema": _SCHEMA_DIALECT,
        "$id": "https://amicable.dev/schema/protocol.json",
        "title": "Amicable wire protocol",
        "description": (
            "Generated by `python -m amicable_protocol.schema` from libs/protocol; do not edit."
        ),
        "$defs": builder.defs,
    }


def render() -> str:
    """The schema as sorted, indented JSON text ending in a newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: print the schema, or write it to ``--out``."""
    parser = argparse.ArgumentParser(
        prog="python -m amicable_protocol.schema",
        description="Export the JSON Schema (draft 2020-12) of every Amicable wire type.",
    )
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


# Keep the imported modules referenced (they register their converter hooks on import).
_ = (http, runtime)

if __name__ == "__main__":
    raise SystemExit(main())

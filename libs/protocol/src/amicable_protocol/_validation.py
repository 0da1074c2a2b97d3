"""Strict structuring hooks and readable validation messages for the cattrs converters.

cattrs coerces by default (``5`` becomes ``"5"``, ``"ab"`` a tuple of two items) and words
its errors for programmers (``unknown error (x not in literal ...)``). Here JSON values must
already have the declared type, and errors read like
``data.permission_mode must be one of 'default', 'accept_edits', 'bypass' (got 'x')``.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, Literal

import attrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from .errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

    import cattrs

_MAX_SHOWN = 40

#: Field renames registered with ``register_renames`` (class -> field -> JSON key).
renamed_fields: dict[type[Any], dict[str, str]] = {}


class InvalidValue(ValueError):
    """A JSON value of the wrong type or outside the allowed values (``reason`` follows the path)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def shown(value: Any) -> str:
    """A short, JSON-flavoured rendering of ``value`` for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def wrong_type(expected: str, value: Any) -> InvalidValue:
    """``must be <expected> (got <value>)``."""
    return InvalidValue(f"must be {expected} (got {shown(value)})")


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise wrong_type("a string", value)


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise wrong_type("an integer", value)


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise wrong_type("a number", value)


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise wrong_type("true or false", value)


def _is_literal(type_: Any) -> bool:
    return typing.get_origin(type_) is Literal


def _structure_literal(value: Any, type_: Any) -> Any:
    allowed = typing.get_args(type_)
    # ``True == 1``: compare types too, so ``true`` is not the literal ``1``.
    if any(value == option and type(value) is type(option) for option in allowed):
        return value
    if len(allowed) == 1:
        raise InvalidValue(f"must be {allowed[0]!r} (got {shown(value)})")
    options = ", ".join(repr(option) for option in allowed)
    raise InvalidValue(f"must be one of {options} (got {shown(value)})")


def _is_array(type_: Any) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def structure_items(value: Any, type_: Any, item: Callable[[Any], Any]) -> list[Any]:
    """Structure a JSON array with ``item``, collecting errors under their index."""
    if not isinstance(value, list | tuple):
        raise wrong_type("an array", value)
    out: list[Any] = []
    errors: list[Exception] = []
    for index, element in enumerate(value):
        try:
            out.append(item(element))
        except Exception as exc:
            exc.add_note(IterableValidationNote(f"@ index {index}", index, type_))
            errors.append(exc)
    if errors:
        raise IterableValidationError("invalid array items", errors, type_)
    return out


def _array_hook(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        item_type = typing.get_args(type_)[0]
        handler = conv.get_structure_hook(item_type)

        def structure(value: Any, _: Any) -> tuple[Any, ...]:
            return tuple(structure_items(value, type_, lambda e: handler(e, item_type)))

        return structure

    return factory


def _is_str_mapping(type_: Any) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is dict and len(args) == 2 and args[0] is str


def _mapping_hook(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        value_type = typing.get_args(type_)[1]
        handler = conv.get_structure_hook(value_type)

        def structure(value: Any, _: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise wrong_type("an object", value)
            out: dict[str, Any] = {}
            errors: list[Exception] = []
            for key, element in value.items():
                try:
                    out[_structure_str(key, None)] = handler(element, value_type)
                except Exception as exc:
                    exc.add_note(IterableValidationNote(f"@ key {key!r}", str(key), type_))
                    errors.append(exc)
            if errors:
                raise IterableValidationError("invalid object values", errors, type_)
            return out

        return structure

    return factory


def require_mapping(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a generated attrs structure function so non-objects are refused readably."""

    def structure(value: Any, type_: Any) -> Any:
        if not isinstance(value, dict):
            raise wrong_type("an object", value)
        return fn(value, type_)

    return structure


def _class_hook(conv: cattrs.Converter, strict: bool) -> Callable[[Any], Any]:
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        return require_mapping(make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=strict))

    return factory


def install(conv: cattrs.Converter, *, strict: bool) -> None:
    """Make ``conv`` refuse coercions; ``strict`` also forbids unknown keys."""
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook_func(_is_literal, _structure_literal)
    conv.register_structure_hook_factory(_is_array, _array_hook(conv))
    conv.register_structure_hook_factory(_is_str_mapping, _mapping_hook(conv))
    conv.register_structure_hook_factory(attrs.has, _class_hook(conv, strict))


def messages(exc: BaseException, path: str) -> list[str]:
    """Readable messages, each naming the JSON path of one problem in ``exc``."""
    if isinstance(exc, ClassValidationError):
        named, other = exc.group_exceptions()
        renames = renamed_fields.get(exc.cl, {})
        found = [
            m
            for sub, note in named
            for m in messages(sub, f"{path}.{renames.get(note.name, note.name)}")
        ]
        return found + [m for sub in other for m in messages(sub, path)]
    if isinstance(exc, IterableValidationError):
        indexed, rest = exc.group_exceptions()
        found = [m for sub, inote in indexed for m in messages(sub, _index(path, inote))]
        return found + [m for sub in rest for m in messages(sub, path)]
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(repr(key) for key in sorted(exc.extra_fields))
        return [f"{path} has unknown keys: {keys}"]
    if isinstance(exc, KeyError):
        return [f"{path} is required"]
    if isinstance(exc, InvalidValue):
        return [f"{path} {exc.reason}"]
    if isinstance(exc, ProtocolError):
        return [exc.message]
    return [f"{path} is invalid ({exc})"]


def _index(path: str, note: IterableValidationNote) -> str:
    return f"{path}[{note.index!r}]" if isinstance(note.index, str) else f"{path}[{note.index}]"

"""The one cattrs converter every wire type goes through (never the global one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception

from .errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

#: Lenient converter: unknown keys are ignored (peers we do not own, e.g. the existing editor).
converter = make_converter(omit_if_default=False)
#: Strict converter: unknown keys are rejected (peers we own: runtime API, resolver answers).
strict_converter = make_converter(forbid_extra_keys=True, omit_if_default=False)


def _omitting_none(cls: type[Any], conv: cattrs.Converter) -> Callable[[Any], dict[str, Any]]:
    # Generated lazily: the generated function binds the hooks of nested classes when it is
    # made, so making it at registration time would miss classes registered after ``cls``.
    generated: list[Callable[[Any], dict[str, Any]]] = []

    def unstructure(obj: Any) -> dict[str, Any]:
        if not generated:
            generated.append(make_dict_unstructure_fn(cls, conv))
        return {k: v for k, v in generated[0](obj).items() if v is not None}

    return unstructure


def register_omit_none(*classes: type[Any]) -> None:
    """Drop ``None``-valued optional fields when these classes are sent on the wire."""
    for cls in classes:
        for conv in (converter, strict_converter):
            conv.register_unstructure_hook(cls, _omitting_none(cls, conv))


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, ProtocolError):
        return exc.message
    return format_exception(exc, type_)


#: Field renames registered with :func:`register_renames` (class -> field -> JSON key).
renamed_fields: dict[type[Any], dict[str, str]] = {}


def register_renames(cls: type[Any], **renames: str) -> None:
    """Use other JSON keys for some fields (``from_`` is ``from`` on the wire)."""
    renamed_fields[cls] = {**renamed_fields.get(cls, {}), **renames}
    for conv in (converter, strict_converter):
        overrides: dict[str, Any] = {name: override(rename=key) for name, key in renames.items()}
        conv.register_structure_hook(
            cls,
            make_dict_structure_fn(
                cls, conv, _cattrs_forbid_extra_keys=conv is strict_converter, **overrides
            ),
        )
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **overrides))


def structure(data: Any, cls: type[T], *, strict: bool = False) -> T:
    """Structure ``data`` into ``cls``, translating cattrs errors into ``ProtocolError``."""
    conv = strict_converter if strict else converter
    try:
        return conv.structure(data, cls)
    except (cattrs.ClassValidationError, cattrs.IterableValidationError) as exc:
        details = "; ".join(
            cattrs.transform_error(exc, path="data", format_exception=_format_exception)
        )
        raise ProtocolError("invalid_field", details) from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise ProtocolError("invalid_field", f"invalid value: {exc}") from exc


def unstructure(obj: Any) -> Any:
    """Turn a wire object into JSON-ready Python data."""
    return converter.unstructure(obj)

"""The one cattrs converter every wire type goes through (never the global one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from . import _validation
from ._validation import renamed_fields as renamed_fields
from .errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

    import cattrs

T = TypeVar("T")

#: Lenient converter: unknown keys are ignored (peers we do not own, e.g. the existing editor).
converter = make_converter(omit_if_default=False)
#: Strict converter: unknown keys are rejected (peers we own: runtime API, resolver answers).
strict_converter = make_converter(forbid_extra_keys=True, omit_if_default=False)
# Both refuse coercions (``5`` is not a string) and word their errors for people.
_validation.install(converter, strict=False)
_validation.install(strict_converter, strict=True)


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


def register_renames(cls: type[Any], **renames: str) -> None:
    """Use other JSON keys for some fields (``from_`` is ``from`` on the wire)."""
    renamed_fields[cls] = {**renamed_fields.get(cls, {}), **renames}
    for conv in (converter, strict_converter):
        overrides: dict[str, Any] = {name: override(rename=key) for name, key in renames.items()}
        conv.register_structure_hook(
            cls,
            _validation.require_mapping(
                make_dict_structure_fn(
                    cls, conv, _cattrs_forbid_extra_keys=conv is strict_converter, **overrides
                )
            ),
        )
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **overrides))


def structure(data: Any, cls: type[T], *, strict: bool = False, path: str = "data") -> T:
    """Structure ``data`` into ``cls``, translating cattrs errors into ``ProtocolError``.

    ``strict`` also refuses unknown keys; ``path`` names ``data`` in error messages.

    Raises:
        ProtocolError: ``invalid_field``, one ``<path> <problem>`` per problem, ``; ``-joined.
    """
    conv = strict_converter if strict else converter
    try:
        return conv.structure(data, cls)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError("invalid_field", "; ".join(_validation.messages(exc, path))) from exc


def unstructure(obj: Any) -> Any:
    """Turn a wire object into JSON-ready Python data."""
    return converter.unstructure(obj)

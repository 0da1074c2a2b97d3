"""The one JSON reader of every peer: RFC 8259 JSON in UTF-8, or a :class:`ProtocolError`.

Python's ``json.loads`` accepts more than JSON and fails in ways a server does not expect:
``NaN``/``Infinity``, escaped lone surrogates (``"\\ud800"``, a ``str`` that cannot be
encoded again: the store, a file write or ``jsonify`` then fail), UTF-16/32 bytes, and
nesting so deep that it raises ``RecursionError``. :func:`load_json` refuses all of them with
``invalid_json`` and a message naming the problem.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ProtocolError

#: The deepest nesting of arrays and objects a document may have (``{}`` is 1 level).
MAX_JSON_DEPTH = 64

#: A surrogate code point (only lone ones survive ``json.loads``: it joins escaped pairs).
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The escape of a surrogate in JSON text (the only way one gets into a decoded document).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(data: str | bytes, *, what: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode one JSON document strictly.

    Args:
        data: the text, or its UTF-8 bytes.
        what: names the document in error messages (``body``, ``frame``).
        max_depth: the deepest nesting of arrays and objects allowed.

    Returns:
        The decoded value (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or None).

    Raises:
        ProtocolError: ``invalid_json``: not UTF-8, not JSON, ``NaN``/``Infinity`` or a
            number out of range, a lone surrogate in a string or key, or nested deeper than
            ``max_depth``.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid_json", f"{what} is not valid JSON: not UTF-8 "
                                f"(byte {exc.start})") from None  # fmt: skip
    else:
        text = data
        if _SURROGATE.search(text) is not None:
            raise ProtocolError("invalid_json", f"{what} contains a lone surrogate")
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError("invalid_json", f"{what} is nested too deeply "
                            f"(more than {max_depth} levels)") from None  # fmt: skip
    except ValueError as exc:  # JSONDecodeError and the hooks' errors
        raise ProtocolError("invalid_json", f"{what} is not valid JSON: {exc}") from None
    surrogates = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    deep = text.count("[") + text.count("{") > max_depth
    if surrogates or deep:  # rare: only then is the document walked
        _check(value, what, max_depth, surrogates=surrogates)
    return value


def _check(value: Any, what: str, max_depth: int, *, surrogates: bool) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if surrogates and _SURROGATE.search(item) is not None:
                raise ProtocolError("invalid_json", f"{what} contains a lone surrogate "
                                    "(an unpaired \\ud800-\\udfff escape)")  # fmt: skip
            continue
        if isinstance(item, dict):
            children: list[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise ProtocolError("invalid_json", f"{what} is nested too deeply "
                                f"(more than {max_depth} levels)")  # fmt: skip
        stack.extend((child, depth + 1) for child in children)

"""One function per kind of value; each reads one variable from a mapping.

Shared rules: values are stripped; unset or blank means "use the default"; a value that
cannot be used raises :class:`SettingsError` naming the variable and the value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import SettingsError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

D = TypeVar("D")
S = TypeVar("S", bound=str)

#: Accepted spellings of a boolean (compared case-insensitively).
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

_SHOWN_CHARS = 80


def _shown(raw: str) -> str:
    """``raw`` for an error message: quoted, and cut when long."""
    if len(raw) > _SHOWN_CHARS:
        return repr(raw[:_SHOWN_CHARS]) + "…"
    return repr(raw)


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def string(env: Mapping[str, str], name: str, default: D) -> str | D:
    """The stripped value of ``name``, or ``default`` when it is unset or blank."""
    raw = _raw(env, name)
    return default if raw is None else raw


def boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); unset or blank: ``default``.

    Raises:
        SettingsError: any other value.
    """
    raw = _raw(env, name)
    if raw is None:
        return default
    word = raw.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(
        f"{name} must be a boolean (1/true/yes/on or 0/false/no/off), got {_shown(raw)}",
        name=name,
    )


def _check_range(
    name: str, raw: str, value: float, minimum: float | None, maximum: float | None
) -> None:
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {_shown(raw)}", name=name)
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {_shown(raw)}", name=name)


def integer(
    env: Mapping[str, str],
    name: str,
    default: D,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | D:
    """A decimal integer within ``[minimum, maximum]``; unset or blank: ``default``.

    Raises:
        SettingsError: not an integer, or out of range.
    """
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {_shown(raw)}", name=name) from None
    _check_range(name, raw, value, minimum, maximum)
    return value


def number(
    env: Mapping[str, str],
    name: str,
    default: D,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | D:
    """A float within ``[minimum, maximum]`` (``inf`` allowed, ``nan`` never).

    Raises:
        SettingsError: not a number, ``nan``, or out of range.
    """
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise SettingsError(f"{name} must be a number, got {_shown(raw)}", name=name)
    _check_range(name, raw, value, minimum, maximum)
    return value


def seconds(
    env: Mapping[str, str],
    name: str,
    default: D,
    *,
    positive: bool = False,
    maximum: float | None = None,
) -> float | D:
    """A duration in (float) seconds: never negative, and above 0 when ``positive``.

    Raises:
        SettingsError: not a number, negative (or 0 when ``positive``), or over ``maximum``.
    """
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise SettingsError(f"{name} must be a number of seconds, got {_shown(raw)}", name=name)
    if value < 0 or (positive and value == 0):
        rule = "positive" if positive else "at least 0"
        raise SettingsError(f"{name} must be {rule}, got {_shown(raw)}", name=name)
    _check_range(name, raw, value, None, maximum)
    return value


def choice(env: Mapping[str, str], name: str, default: S, allowed: Collection[S]) -> S:
    """One of ``allowed`` (compared case-insensitively; returned as spelled in ``allowed``).

    Raises:
        SettingsError: any other value.
    """
    raw = _raw(env, name)
    if raw is None:
        return default
    for option in allowed:
        if option.lower() == raw.lower():
            return option
    *others, last = allowed
    options = f"{', '.join(others)} or {last}" if others else last
    raise SettingsError(f"{name} must be {options}, got {_shown(raw)}", name=name)


def comma_list(env: Mapping[str, str], name: str, default: D) -> tuple[str, ...] | D:
    """A comma-separated list, items stripped, empty items dropped; unset or blank: default.

    A value of only separators (``,``) is an explicitly empty list.
    """
    raw = _raw(env, name)
    if raw is None:
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def json_value(env: Mapping[str, str], name: str, default: D) -> Any | D:
    """The decoded JSON document in ``name``; unset or blank: ``default``.

    The caller checks its shape.

    Raises:
        SettingsError: not valid JSON.
    """
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{name} is not valid JSON ({exc.msg} at column {exc.colno}), got {_shown(raw)}",
            name=name,
        ) from None


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def secret(
    env: Mapping[str, str], name: str, *, read_file: Callable[[str], str] = _read_text
) -> str | None:
    """A secret from ``name`` or, when that is unset or blank, from the file ``name_FILE``.

    The value and the file's content are stripped; an empty result is None (unset). The
    file is read once, here (with ``read_file``; tests may pass their own). Error messages
    never contain the secret.

    Raises:
        SettingsError: ``name_FILE`` names a file that cannot be read.
    """
    value = _raw(env, name)
    if value is not None:
        return value
    file_name = f"{name}_FILE"
    path = _raw(env, file_name)
    if path is None:
        return None
    try:
        content = read_file(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"{file_name}: cannot read {path}: {reason}", name=file_name) from exc
    except UnicodeDecodeError:  # not chained: its message quotes bytes of the secret
        raise SettingsError(f"{file_name}: {path} is not UTF-8 text", name=file_name) from None
    return content.strip() or None

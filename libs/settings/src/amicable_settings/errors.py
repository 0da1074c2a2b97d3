"""Errors of the settings library.

Exception tree::

    ValueError
    └── SettingsError            a variable has a value that cannot be used; the message
                                 names the variable and (except for secrets) the bad value

A service keeps its own ``ConfigError``: it subclasses :class:`SettingsError` and wraps the
library's errors once, where it reads its environment (:func:`errors_as`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used.

    Attributes:
        name: the variable (``FOO`` or ``FOO_FILE``), when one variable is to blame.
    """

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


@contextmanager
def errors_as(error: type[SettingsError]) -> Iterator[None]:
    """Re-raise :class:`SettingsError` from the block as ``error`` (a service's subclass).

    Errors that already are an ``error`` pass through unchanged; the original is chained
    as ``__cause__``.

    Raises:
        error: the block raised a :class:`SettingsError` of another class.
    """
    try:
        yield
    except error:
        raise
    except SettingsError as exc:
        raise error(str(exc), name=exc.name) from exc

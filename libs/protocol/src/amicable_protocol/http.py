"""Error bodies of the HTTP APIs (agent ``/api``, runtime ``/v1``, router)."""

from __future__ import annotations

import attrs


@attrs.frozen
class ErrorBody:
    """``{"error": code, "detail": message}`` — the existing API's error shape.

    ``error`` is a stable machine code (``not_found``, ``conflict``, ``invalid_path`` …);
    ``detail`` is a sentence for people.
    """

    error: str
    detail: str | None = None

"""Amicable sandbox runtime: the authenticated file/exec API and dev-server supervisor that
runs inside every sandbox (``amicable-sandbox-runtime``).

The public names are imported lazily: ``init-workspace`` and ``templates`` must not pay for
the web stack, and ``serve`` starts the dev server before importing it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import RuntimeConfig, load_config
    from .errors import RuntimeApiError
    from .server import serve

__all__ = ["RuntimeApiError", "RuntimeConfig", "load_config", "serve"]

_HOMES = {
    "RuntimeApiError": ".errors",
    "RuntimeConfig": ".config",
    "load_config": ".config",
    "serve": ".server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)

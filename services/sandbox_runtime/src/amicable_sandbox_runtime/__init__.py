"""Amicable sandbox runtime: the authenticated file/exec API and dev-server supervisor that
runs inside every sandbox (``amicable-sandbox-runtime``)."""

from .config import RuntimeConfig, load_config
from .errors import RuntimeApiError
from .server import serve

__all__ = ["RuntimeApiError", "RuntimeConfig", "load_config", "serve"]

"""Amicable preview router: Host-based HTTP/WebSocket reverse proxy to sandbox dev servers."""

from .config import RouterConfig
from .server import serve

__all__ = ["RouterConfig", "serve"]

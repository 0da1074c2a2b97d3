"""Which browser origins may call an app's DB proxy (``AMICABLE_DB_PROXY_ORIGIN_MODE``).

``strict_preview`` (default) accepts only the preview origins of *that* app's project (its
slug host and its sandbox-id host), where upstream accepted any preview subdomain — so one
app's preview cannot use another app's key from the browser. ``any`` accepts any non-empty
Origin. The Origin header is a browser-side control only: non-browser clients can send
anything, so the app key remains the credential (see docs/kubernetes.md §7).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import trio

from amicable_agent.sandboxes.base import sandbox_id_for

if TYPE_CHECKING:
    from amicable_agent.store.base import Project

    from .config import OriginMode

#: ``app_id -> origins`` of the app's previews (empty for unknown apps).
OriginLookup = Callable[[str], Awaitable[Collection[str]]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str | None) -> str | None:
    """``scheme://host[:port]`` in canonical form (lower case, no default port), or None
    for anything that is not a plain http(s) origin (``null``, paths, user info …)."""
    if not origin:
        return None
    origin = origin.strip()
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def preview_origin(preview_url: str) -> str:
    """The origin (``scheme://host[:port]``) of a preview URL."""
    return normalize_origin(preview_url.rstrip("/")) or preview_url.rstrip("/")


class ProjectLookup(Protocol):
    """The part of :class:`~amicable_agent.store.base.Store` the origin check needs."""

    async def get_project(self, project_id: str) -> Project | None:
        """A live project by id."""
        ...


def store_origin_lookup(store: ProjectLookup, preview_url: Callable[[str], str]) -> OriginLookup:
    """An :data:`OriginLookup` from the projects store: the preview origins under the
    project's current slug and under its sandbox id (both are served by the router).

    Args:
        store: the projects store.
        preview_url: label -> browser URL of the preview (``AgentConfig.preview_url``).
    """

    async def lookup(app_id: str) -> Collection[str]:
        project = await store.get_project(app_id)
        if project is None:
            return ()
        sandbox_id = project.sandbox_id or sandbox_id_for(project.project_id)
        return {preview_origin(preview_url(project.slug)), preview_origin(preview_url(sandbox_id))}

    return lookup


class OriginPolicy:
    """Decides whether a request's Origin may use an app's proxy."""

    def __init__(self, mode: OriginMode, lookup: OriginLookup) -> None:
        self.mode = mode
        self._lookup = lookup

    async def allowed(self, origin: str | None, app_id: str) -> bool:
        """True if ``origin`` may call the proxy of ``app_id`` (always a checkpoint)."""
        if self.mode == "any":
            await trio.lowlevel.checkpoint()
            return bool(origin and origin.strip())
        wanted = normalize_origin(origin)
        if wanted is None:
            return False
        return wanted in {normalize_origin(o) for o in await self._lookup(app_id)}

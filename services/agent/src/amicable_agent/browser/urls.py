"""Where the agent's browser may go: a preview's URL for a model-supplied path, and the
host-resolver rules that keep every other host unreachable (pure, no I/O).

The browser loads a preview the way a person's browser does: ``<label>.<base domain>`` through
the preview router. With a router address configured (Kubernetes: the router's internal
Service; ``amicable up``: its loopback port) the preview hosts are mapped onto it by
Chromium's ``--host-resolver-rules``; without one they resolve as usual. Every other name and
every IP literal maps to "not found", so a page cannot make the agent's browser reach the
agent's own ports, the cluster or a metadata service.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import attrs

from .errors import PreviewPathRefused

#: Longest path (with query and fragment) accepted from the model.
PATH_MAX = 2048
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_ENCODED_DOT = re.compile(r"%2e", re.IGNORECASE)


def jail_path(path: str) -> str:
    """``path`` as a root-relative ``/path[?query][#fragment]`` inside the preview.

    Relative paths are taken from the root (``about`` is ``/about``); dot segments are
    resolved (``%2e`` counts as a dot, as browsers read it); query and fragment are kept.

    Raises:
        PreviewPathRefused: a URL with a scheme or host (``http://…``, ``//host``,
            ``javascript:``), a backslash, a control or space character, a path that climbs
            above the root with ``..``, or more than :data:`PATH_MAX` characters.
    """
    raw = path.strip() or "/"
    if len(raw) > PATH_MAX:
        raise PreviewPathRefused(f"the path is longer than {PATH_MAX} characters")
    if _CONTROL.search(raw) or "\\" in raw:
        raise PreviewPathRefused("the path may not contain spaces, control characters or '\\'")
    if raw.startswith("//"):
        raise PreviewPathRefused("only paths inside the preview are allowed, not other hosts")
    parts = urlsplit(raw if raw.startswith(("/", "?", "#")) else "/" + raw)
    if parts.scheme or parts.netloc or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", raw):
        raise PreviewPathRefused("only paths inside the preview are allowed, not URLs")
    segments = _ENCODED_DOT.sub(".", parts.path or "/").split("/")
    depth = 0
    for segment in segments[1:]:
        if segment == "..":
            depth -= 1
            if depth < 0:
                raise PreviewPathRefused("the path climbs above the preview's root")
        elif segment not in ("", "."):
            depth += 1
    clean = posixpath.normpath(_ENCODED_DOT.sub(".", parts.path or "/"))
    clean = "/" + clean.lstrip("/") if clean != "." else "/"
    if (parts.path or "/").endswith("/") and clean != "/":
        clean += "/"
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return clean + query + fragment


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


@attrs.frozen
class PreviewAddress:
    """How the agent's browser reaches previews.

    Attributes:
        base_domain: ``PREVIEW_BASE_DOMAIN``; preview hosts are ``<label>.<base_domain>``.
        public_url: label -> the URL a person opens (``AgentConfig.preview_url``); used as
            is when there is no router address.
        router_url: the preview router's internal address (``http://host:port``), or None.
    """

    base_domain: str
    public_url: Callable[[str], str]
    router_url: str | None = None

    def origin_for(self, label: str) -> str:
        """The origin the browser loads for ``label`` (no trailing slash).

        Through a router address it is plain ``http://<label>.<base>:<router port>`` — the
        router's internal Service speaks HTTP — so the Host header the router sees is the
        preview host, as from a person's browser.
        """
        if self.router_url is not None:
            _host, port = _host_port(self.router_url)
            return f"http://{label}.{self.base_domain}:{port}"
        return self.public_url(label).rstrip("/")

    def url_for(self, label: str, path: str) -> str:
        """The full URL of ``path`` in ``label``'s preview.

        Raises:
            PreviewPathRefused: see :func:`jail_path`; also when the result would not be on
                the preview's own host (a guard against parser differences).
        """
        origin = self.origin_for(label)
        url = origin + jail_path(path)
        if urlsplit(url).netloc != urlsplit(origin).netloc:
            raise PreviewPathRefused("only paths inside the preview are allowed")
        return url

    def resolver_rules(self) -> str:
        """Chromium's ``--host-resolver-rules``: preview hosts reach the router (or resolve
        normally), every other name and IP literal is not found."""
        pattern = f"*.{self.base_domain}"
        if self.router_url is None:
            return f"MAP * ~NOTFOUND, EXCLUDE {pattern}"
        host, _port = _host_port(self.router_url)
        target = f"[{host}]" if ":" in host else host
        return f"MAP {pattern} {target}, MAP * ~NOTFOUND"

"""Which hosts the agent answers, which browser origins may call it, where logins may return.

Everything comes from configuration (``PUBLIC_BASE_URL``, ``AMICABLE_ALLOWED_HOSTS``,
``AMICABLE_ALLOWED_ORIGINS``, ``AUTH_REDIRECT_ALLOW_ORIGINS``) and the address the agent is
bound to, never from the request: a page that rebinds its own domain to 127.0.0.1 sends its
own name as ``Host`` and gets 421.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from amicable_agent.errors import ConfigError

from .config import is_loopback, origin_of

if TYPE_CHECKING:
    from .config import AuthConfig

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class OriginPolicy:
    """Hosts, origins and redirect targets the agent accepts.

    Call :meth:`listening` once the public port is bound: without ``PUBLIC_BASE_URL`` the
    agent's own origins are the loopback names with that port.
    """

    def __init__(self, config: AuthConfig) -> None:
        self._public = origin_of(config.public_base_url) if config.public_base_url else None
        self._extra_hosts = {h.lower() for h in config.allowed_hosts}
        self._allowed = set(config.allowed_origins)
        self._redirects = set(config.redirect_origins)
        self._own: list[str] = [self._public] if self._public else []
        self._hosts: set[str] = set(self._extra_hosts)
        if self._public:
            self._add_host(self._public)

    def listening(self, bind_host: str, port: int) -> None:
        """Learn the bound public port (adds the loopback origins when bound to loopback).

        Raises:
            ConfigError: bound to a public address with no ``PUBLIC_BASE_URL`` (the agent
                could not tell its own name from a rebinding attacker's).
        """
        if is_loopback(bind_host):
            # A bare loopback name is no rebinding risk: an attacker's page sends its own name.
            self._hosts.update(LOOPBACK_NAMES)
            for name in LOOPBACK_NAMES:
                origin = f"http://{name}:{port}"
                if origin not in self._own:
                    self._own.append(origin)
                self._add_host(origin)
        elif self._public is None:
            raise ConfigError(
                f"the agent listens on {bind_host}, not only on this machine: set "
                "PUBLIC_BASE_URL to the URL people use to reach it (e.g. https://agent.example.com)"
            )

    def _add_host(self, origin: str) -> None:
        parts = urlsplit(origin)
        host = (parts.netloc or "").lower()
        self._hosts.add(host)
        default = {"http": 80, "https": 443}.get(parts.scheme)
        if parts.port is None and default is not None:
            self._hosts.add(f"{host}:{default}")

    @property
    def own_origin(self) -> str:
        """The agent's own origin (``PUBLIC_BASE_URL``, else ``http://localhost:<port>``)."""
        return self._own[0] if self._own else "http://localhost"

    @property
    def own_origins(self) -> tuple[str, ...]:
        """Every origin the agent itself is served at."""
        return tuple(self._own)

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request's ``Host`` names this agent."""
        return bool(host) and host.strip().lower() in self._hosts  # type: ignore[union-attr]

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a browser ``Origin`` may use the API (exact match, never a wildcard)."""
        if not origin or origin == "null":
            return False
        try:
            normal = origin_of(origin)
        except ValueError:
            return False
        return normal in self._own or normal in self._allowed

    def redirect_allowed(self, target: str) -> bool:
        """Whether a login/logout may send the browser to ``target``: a path on this agent,
        or an absolute URL on an allowed origin. ``//evil``, ``\\evil``, ``javascript:`` and
        anything with control characters are refused."""
        if not target or any(ord(c) < 0x20 or c == "\\" for c in target):
            return False
        if target.startswith("/"):
            return not target.startswith("//")
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        try:
            origin = origin_of(target)
        except ValueError:
            return False
        return origin in self._own or origin in self._allowed or origin in self._redirects

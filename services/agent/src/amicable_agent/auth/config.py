"""Login settings (``AUTH_MODE``, OIDC, session cookie, own origin, allowed origins, quotas).

See ``docs/auth.md`` for what each variable means. Read once from the environment by
:meth:`AuthConfig.from_env`; nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import attrs
from amicable_settings import boolean, comma_list, errors_as, integer, secret, string

from amicable_agent.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

AuthMode = Literal["none", "oidc", "google"]
GOOGLE_ISSUER = "https://accounts.google.com"
DEFAULT_SCOPES = ("openid", "email", "profile")
#: The shortest ``SESSION_SECRET`` accepted (characters).
MIN_SECRET_LENGTH = 32


#: What one running local sandbox (runtime + dev server) costs in memory, for the default cap.
SANDBOX_MEMORY_BYTES = 300 * 1024 * 1024


@attrs.frozen
class Quotas:
    """Per-user and global limits (0 = no limit; ``running_sandboxes`` None = the default:
    what free memory holds locally, 200 on Kubernetes)."""

    projects_per_user: int = 100
    running_sandboxes_per_user: int = 5
    concurrent_turns_per_user: int = 3
    running_sandboxes: int | None = None

    def with_default_cap(self, backend: str, meminfo: str | None = None) -> Quotas:
        """These quotas with ``running_sandboxes`` filled in for ``backend`` when unset."""
        if self.running_sandboxes is not None:
            return self
        if backend != "local":
            return attrs.evolve(self, running_sandboxes=200)
        available = _mem_available(meminfo)
        cap = max(4, available // SANDBOX_MEMORY_BYTES) if available else 50
        return attrs.evolve(self, running_sandboxes=cap)


def _mem_available(meminfo: str | None) -> int:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (0 when unknown)."""
    if meminfo is None:
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            return 0
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return 0


@attrs.frozen
class AuthConfig:
    """Who may call the agent, and from where.

    Attributes:
        mode: ``none``, ``oidc`` or ``google``.
        issuer_url: the OpenID provider (``OIDC_ISSUER_URL``; Google's in ``google`` mode).
        client_id / client_secret: the registered client.
        scopes: requested scopes.
        allowed_email_domains: lower-case domains a user's e-mail must be in (empty = any).
        session_secret: signs the session cookie.
        session_secret_generated: the secret was made up at start (logins end at restart).
        session_max_age_s: lifetime of a login.
        cookie_name: the session cookie's name.
        public_base_url: the agent's own base URL (``PUBLIC_BASE_URL``), or None until
            ``amicable up`` or the server fills it in from the bound port.
        allowed_hosts: extra ``Host`` values answered (``AMICABLE_ALLOWED_HOSTS``).
        allowed_origins: exact editor origins (``AMICABLE_ALLOWED_ORIGINS``/``CORS_ALLOW_ORIGINS``).
        redirect_origins: where login/logout may redirect to (``AUTH_REDIRECT_ALLOW_ORIGINS``).
        admin_emails: users who see every project and inherit unowned ones.
        insecure_no_auth: ``AMICABLE_INSECURE_NO_AUTH``: allow ``none`` on a public address.
        quotas: the limits.
    """

    mode: AuthMode = "none"
    issuer_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    allowed_email_domains: tuple[str, ...] = ()
    session_secret: str = attrs.field(factory=lambda: secrets.token_urlsafe(48), repr=False)
    session_secret_generated: bool = True
    session_max_age_s: int = 7 * 24 * 3600
    cookie_name: str = "amicable_session"
    public_base_url: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    redirect_origins: tuple[str, ...] = ()
    admin_emails: tuple[str, ...] = ()
    insecure_no_auth: bool = False
    quotas: Quotas = Quotas()

    @property
    def login_enabled(self) -> bool:
        """A login is required (``oidc`` or ``google``)."""
        return self.mode != "none"

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` (the agent is served over https)."""
        return (self.public_base_url or "").startswith("https://")

    def check_preview_domain(self, preview_base_domain: str) -> None:
        """Refuse allowed origins that are previews (model-written pages).

        Raises:
            ConfigError: an allowed origin's host is under the preview base domain.
        """
        base = preview_base_domain.lower().strip(".")
        for origin in (*self.allowed_origins, *self.redirect_origins):
            host = (urlsplit(origin).hostname or "").lower()
            if host == base or host.endswith("." + base):
                raise ConfigError(
                    f"{origin} is a preview origin (under PREVIEW_BASE_DOMAIN={base}); "
                    "previews run model-written code and may never use the agent's API"
                )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthConfig:
        """Read the settings (see ``docs/auth.md``).

        Raises:
            ConfigError: a value is malformed, or a required one is missing for the mode.
        """
        with errors_as(ConfigError):
            return cls._from_env(env)

    @classmethod
    def _from_env(cls, env: Mapping[str, str]) -> AuthConfig:
        google_id = string(env, "GOOGLE_CLIENT_ID", "")
        google_secret = secret(env, "GOOGLE_CLIENT_SECRET")
        default_mode = "google" if google_id and google_secret else "none"
        mode = (string(env, "AUTH_MODE", "") or default_mode).lower()
        if mode not in ("none", "oidc", "google"):
            raise ConfigError(f"AUTH_MODE must be none, oidc or google, not {mode!r}")
        issuer = client_id = client_secret = None
        if mode == "oidc":
            issuer = _url(env, "OIDC_ISSUER_URL", required=True)
            client_id = string(env, "OIDC_CLIENT_ID", "")
            client_secret = secret(env, "OIDC_CLIENT_SECRET")
            if not client_id:
                raise ConfigError("AUTH_MODE=oidc needs OIDC_CLIENT_ID")
        elif mode == "google":
            issuer = GOOGLE_ISSUER
            client_id = google_id or string(env, "OIDC_CLIENT_ID", "")
            client_secret = google_secret or secret(env, "OIDC_CLIENT_SECRET")
            if not client_id or not client_secret:
                raise ConfigError(
                    "AUTH_MODE=google needs GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET"
                )
        session_secret = secret(env, "SESSION_SECRET")
        if session_secret is not None and len(session_secret) < MIN_SECRET_LENGTH:
            raise ConfigError(f"SESSION_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        origins = _origins(env, "AMICABLE_ALLOWED_ORIGINS") or _origins(env, "CORS_ALLOW_ORIGINS")
        scopes = tuple((string(env, "OIDC_SCOPES", "") or " ".join(DEFAULT_SCOPES)).split())
        if "openid" not in scopes:
            raise ConfigError("OIDC_SCOPES must include openid")
        return cls(
            session_secret=session_secret or secrets.token_urlsafe(48),
            session_secret_generated=session_secret is None,
            mode=mode,  # type: ignore[arg-type]
            issuer_url=issuer,
            client_id=client_id,
            client_secret=client_secret,
            scopes=scopes,
            allowed_email_domains=tuple(
                d.lower().lstrip("@") for d in comma_list(env, "OIDC_ALLOWED_EMAIL_DOMAINS", ())
            ),
            session_max_age_s=integer(env, "SESSION_MAX_AGE_SECONDS", 7 * 24 * 3600, minimum=60),
            cookie_name=string(env, "SESSION_COOKIE_NAME", "") or "amicable_session",
            public_base_url=_url(env, "PUBLIC_BASE_URL", required=False),
            allowed_hosts=tuple(h.lower() for h in comma_list(env, "AMICABLE_ALLOWED_HOSTS", ())),
            allowed_origins=origins,
            redirect_origins=_origins(env, "AUTH_REDIRECT_ALLOW_ORIGINS"),
            admin_emails=tuple(e.lower() for e in comma_list(env, "AMICABLE_ADMIN_EMAILS", ())),
            insecure_no_auth=boolean(env, "AMICABLE_INSECURE_NO_AUTH", False),
            quotas=Quotas(
                projects_per_user=integer(env, "AMICABLE_MAX_PROJECTS_PER_USER", 100),
                running_sandboxes_per_user=integer(
                    env, "AMICABLE_MAX_RUNNING_SANDBOXES_PER_USER", 5
                ),
                concurrent_turns_per_user=integer(env, "AMICABLE_MAX_CONCURRENT_TURNS_PER_USER", 3),
                running_sandboxes=(
                    integer(env, "AMICABLE_MAX_RUNNING_SANDBOXES", 0)
                    if string(env, "AMICABLE_MAX_RUNNING_SANDBOXES", "")
                    else None
                ),
            ),
        )


def is_loopback(host: str) -> bool:
    """Whether a bind address only listens on this machine (``127.0.0.1``, ``::1``,
    ``localhost``). ``0.0.0.0`` and ``::`` are every interface, not loopback."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-case, default ports dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _url(env: Mapping[str, str], name: str, *, required: bool) -> str | None:
    raw = string(env, name, "").rstrip("/")
    if not raw:
        if required:
            raise ConfigError(f"{name} is required")
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, not {raw!r}")
    return raw


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    out = []
    for item in comma_list(env, name, ()):
        parts = urlsplit(item)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "*" in item
            or parts.path.strip("/")
        ):
            raise ConfigError(
                f"{name}: {item!r} is not an exact origin (scheme://host[:port], no wildcards)"
            )
        out.append(origin_of(item))
    return tuple(out)

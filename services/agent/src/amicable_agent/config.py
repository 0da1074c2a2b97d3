"""The agent's configuration: one frozen attrs class, loaded once in ``__main__`` from env.

Nothing else in the package reads ``os.environ``; everything gets its config passed down.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs

from .db.config import HasuraConfig
from .errors import ConfigError
from .gitsync.config import GitSyncConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

SandboxBackendName = Literal["local", "kubernetes"]
LocalIsolation = Literal["auto", "bwrap", "none"]


#: URL prefixes of the PostgreSQL store.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def parse_database_url(env: Mapping[str, str]) -> str | None:
    """``AMICABLE_DATABASE_URL``, checked: empty, ``sqlite:///<path>`` or a PostgreSQL URL.

    Raises:
        ConfigError: any other scheme (the message never repeats the URL: it may hold a
            password).
    """
    url = env.get("AMICABLE_DATABASE_URL", "").strip()
    if not url:
        return None
    if url.startswith(("sqlite:///", *POSTGRES_SCHEMES)):
        return url
    scheme = url.split("://", 1)[0] if "://" in url else "(none)"
    raise ConfigError(
        f"AMICABLE_DATABASE_URL: unsupported scheme {scheme!r}; use sqlite:///<path> or "
        "postgresql://user:pass@host/db"
    )


def default_data_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/amicable`` or ``~/.local/share/amicable``."""
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", str(Path.home()))) / ".local" / "share"
    return base / "amicable"


@attrs.frozen
class AgentConfig:
    """Everything the agent service needs to run.

    Attributes:
        host: interface for both ports (``AMICABLE_AGENT_HOST``).
        port: public port (``AMICABLE_AGENT_PORT``, 8000; 0 = pick a free one).
        internal_port: internal port for ``/internal/*`` (``AMICABLE_AGENT_INTERNAL_PORT``).
        internal_host: interface of the internal port (``AMICABLE_AGENT_INTERNAL_HOST``).
        allowed_origins: editor origins accepted for WebSocket and ``/api`` (comma list in
            ``AMICABLE_ALLOWED_ORIGINS``; ``*`` as the port matches any port, e.g.
            ``http://localhost:*``). Empty = the local default (own origin + localhost).
        data_dir: ``AMICABLE_DATA_DIR`` (workspaces, cache, SQLite file).
        database_url: ``AMICABLE_DATABASE_URL``: ``sqlite:///<path>`` (default
            ``<data_dir>/amicable.db``) or ``postgresql://user:pass@host/db`` (a store several
            agent replicas can share).
        sandbox_backend: ``AMICABLE_SANDBOX_BACKEND`` (``local`` | ``kubernetes``).
        warm_pool_size: ``AMICABLE_WARM_POOL_SIZE`` (local backend).
        spare_workspaces: ``AMICABLE_SPARE_WORKSPACES`` (local backend: complete project
            trees kept on disk for cold starts, no process; 0 disables).
        sandbox_idle_ttl_s: ``AMICABLE_SANDBOX_IDLE_TTL_S`` (0 = never stop idle sandboxes).
        session_idle_timeout_s: ``AMICABLE_SESSION_IDLE_TIMEOUT_S``.
        local_isolation: ``AMICABLE_LOCAL_ISOLATION``: ``auto`` (default: bubblewrap + pasta,
            refusing to start where the machine cannot), ``bwrap`` (required) or ``none``
            (unsafe, explicit only).
        sandbox_memory_bytes: ``AMICABLE_SANDBOX_MEMORY_BYTES`` (local: per sandbox).
        sandbox_pids_max: ``AMICABLE_SANDBOX_PIDS_MAX`` (local: processes and threads).
        sandbox_cpu_weight: ``AMICABLE_SANDBOX_CPU_WEIGHT`` (local: CPU share, 100 = normal).
        sandbox_disk_bytes: ``AMICABLE_SANDBOX_DISK_BYTES`` (local: the sandbox directory).
        sandbox_env_passthrough: ``AMICABLE_SANDBOX_ENV_PASSTHROUGH`` (local: comma list of
            extra environment variable names sandboxes see; secret-looking names never).
        preview_base_domain: ``PREVIEW_BASE_DOMAIN``.
        preview_scheme: ``PREVIEW_SCHEME``.
        preview_public_port: port shown in preview URLs (``AMICABLE_PREVIEW_PUBLIC_PORT``;
            ``amicable up`` sets the router's port; None = scheme default).
        preview_resolver_token: ``AMICABLE_PREVIEW_RESOLVER_TOKEN`` (or ``_FILE``).
        model_configured: ``ANTHROPIC_API_KEY`` is set (the key itself is not kept here).
        editor_dist: ``AMICABLE_EDITOR_DIST`` — the built editor served on ``/`` locally.
        runtime_command: how to start ``amicable-sandbox-runtime`` (``AMICABLE_RUNTIME_COMMAND``).
        template_id: default project template.
        provision_timeout_s: deadline for creating/starting a sandbox.
        node_modules_cache_dir: ``AMICABLE_NODE_MODULES_CACHE_DIR`` (local backend npm
            cache; default ``<data_dir>/cache``).
        ws_send_queue_size: messages queued per socket before it counts as slow.
        hasura: the per-app database settings (``HASURA_*``, see
            :class:`amicable_agent.db.HasuraConfig`); None = feature off.
        git_sync: GitLab persistence settings (``GITLAB_*``, ``AMICABLE_GIT_SYNC_*``, see
            :class:`amicable_agent.gitsync.GitSyncConfig`); None or disabled = feature off.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    internal_port: int = 8001
    internal_host: str = "127.0.0.1"
    allowed_origins: tuple[str, ...] = ()
    data_dir: Path = attrs.field(factory=lambda: default_data_dir({}))
    database_url: str | None = attrs.field(default=None, repr=False)  # may hold a password
    sandbox_backend: SandboxBackendName = "local"
    warm_pool_size: int = 1
    spare_workspaces: int = 1
    sandbox_idle_ttl_s: float = 1800.0
    session_idle_timeout_s: float = 600.0
    local_isolation: LocalIsolation = "auto"
    sandbox_memory_bytes: int = 2 * 1024**3
    sandbox_pids_max: int = 1024
    sandbox_cpu_weight: int = 50
    sandbox_disk_bytes: int = 4 * 1024**3
    sandbox_env_passthrough: tuple[str, ...] = ()
    preview_base_domain: str = "preview.localhost"
    preview_scheme: str = "http"
    preview_public_port: int | None = None
    preview_resolver_token: str | None = attrs.field(default=None, repr=False)
    model_configured: bool = False
    editor_dist: Path | None = None
    runtime_command: tuple[str, ...] = ("amicable-sandbox-runtime",)
    template_id: str = "vite"
    provision_timeout_s: float = 600.0
    node_modules_cache_dir: Path | None = None
    ws_send_queue_size: int = 256
    hasura: HasuraConfig | None = attrs.field(default=None, repr=False)
    git_sync: GitSyncConfig | None = attrs.field(default=None, repr=False)

    @property
    def postgres_url(self) -> str | None:
        """``database_url`` when it names a PostgreSQL database, else None."""
        url = self.database_url or ""
        return url if url.startswith(POSTGRES_SCHEMES) else None

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file named by ``database_url`` (default ``<data_dir>/amicable.db``).

        Raises:
            ConfigError: the URL is neither a ``sqlite:///`` nor a PostgreSQL URL, or it is a
                PostgreSQL URL (there is no file).
        """
        if not self.database_url:
            return self.data_dir / "amicable.db"
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            raise ConfigError(
                "AMICABLE_DATABASE_URL must be sqlite:///<path> or postgresql://user:pass@host/db"
            )
        return Path("/" + self.database_url[len(prefix) :].lstrip("/"))

    def preview_url(self, label: str) -> str:
        """The browser URL of a preview (``http://<label>.<base>[:port]/``)."""
        port = f":{self.preview_public_port}" if self.preview_public_port else ""
        return f"{self.preview_scheme}://{label}.{self.preview_base_domain}{port}/"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentConfig:
        """Build the config from environment variables (see the class docstring).

        Raises:
            ConfigError: a variable is malformed.
        """

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError as exc:
                raise ConfigError(f"{name} must be an integer, not {raw!r}") from exc

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError as exc:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from exc

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            raw = env.get(name, "").strip().lower() or default
            if raw not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
            return raw

        token = env.get("AMICABLE_PREVIEW_RESOLVER_TOKEN") or None
        token_file = env.get("AMICABLE_PREVIEW_RESOLVER_TOKEN_FILE")
        if not token and token_file:
            token = Path(token_file).read_text().strip() or None
        data_dir = Path(env["AMICABLE_DATA_DIR"]) if env.get("AMICABLE_DATA_DIR") else None
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("AMICABLE_ALLOWED_ORIGINS", "").split(",")
        )
        dist = env.get("AMICABLE_EDITOR_DIST")
        public_port = integer("AMICABLE_PREVIEW_PUBLIC_PORT", 0)
        runtime_cmd = tuple(env.get("AMICABLE_RUNTIME_COMMAND", "").split())
        from .db.config import hasura_config_from_env  # the db package imports this module
        from .gitsync.config import GitSyncConfig as _GitSyncConfig  # same

        return cls(
            host=env.get("AMICABLE_AGENT_HOST", "127.0.0.1"),
            port=integer("AMICABLE_AGENT_PORT", 8000),
            internal_port=integer("AMICABLE_AGENT_INTERNAL_PORT", 8001),
            internal_host=env.get("AMICABLE_AGENT_INTERNAL_HOST", "127.0.0.1"),
            allowed_origins=tuple(o for o in origins if o),
            data_dir=data_dir or default_data_dir(env),
            database_url=parse_database_url(env),
            sandbox_backend=choice(  # type: ignore[arg-type]
                "AMICABLE_SANDBOX_BACKEND", "local", ("local", "kubernetes")
            ),
            warm_pool_size=integer("AMICABLE_WARM_POOL_SIZE", 1),
            spare_workspaces=integer("AMICABLE_SPARE_WORKSPACES", 1),
            sandbox_idle_ttl_s=number("AMICABLE_SANDBOX_IDLE_TTL_S", 1800.0),
            session_idle_timeout_s=number("AMICABLE_SESSION_IDLE_TIMEOUT_S", 600.0),
            local_isolation=choice(  # type: ignore[arg-type]
                "AMICABLE_LOCAL_ISOLATION", "auto", ("auto", "bwrap", "none")
            ),
            sandbox_memory_bytes=integer("AMICABLE_SANDBOX_MEMORY_BYTES", 2 * 1024**3),
            sandbox_pids_max=integer("AMICABLE_SANDBOX_PIDS_MAX", 1024),
            sandbox_cpu_weight=integer("AMICABLE_SANDBOX_CPU_WEIGHT", 50),
            sandbox_disk_bytes=integer("AMICABLE_SANDBOX_DISK_BYTES", 4 * 1024**3),
            sandbox_env_passthrough=tuple(
                n.strip()
                for n in env.get("AMICABLE_SANDBOX_ENV_PASSTHROUGH", "").split(",")
                if n.strip()
            ),
            preview_base_domain=env.get("PREVIEW_BASE_DOMAIN", "preview.localhost").strip("."),
            preview_scheme=env.get("PREVIEW_SCHEME", "http"),
            preview_public_port=public_port or None,
            preview_resolver_token=token,
            model_configured=bool(env.get("ANTHROPIC_API_KEY", "").strip()),
            editor_dist=Path(dist) if dist else None,
            runtime_command=runtime_cmd or ("amicable-sandbox-runtime",),
            template_id=env.get("AMICABLE_DEFAULT_TEMPLATE", "vite"),
            node_modules_cache_dir=(
                Path(env["AMICABLE_NODE_MODULES_CACHE_DIR"])
                if env.get("AMICABLE_NODE_MODULES_CACHE_DIR")
                else None
            ),
            hasura=hasura_config_from_env(env),
            git_sync=_GitSyncConfig.from_env(env),
        )


def random_token() -> str:
    """A fresh random secret (per-sandbox runtime tokens, the local resolver token)."""
    return secrets.token_urlsafe(32)

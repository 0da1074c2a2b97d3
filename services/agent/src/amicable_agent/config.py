"""The agent's configuration: one frozen attrs class, loaded once in ``__main__`` from env.

Nothing else in the package reads ``os.environ``; everything gets its config passed down.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
from amicable_protocol import MAX_USER_TEXT_CHARS
from amicable_settings import (
    boolean,
    choice,
    comma_list,
    errors_as,
    integer,
    seconds,
    secret,
    string,
)
from amicable_templates import DEFAULT_TEMPLATE, registry

from .auth.config import AuthConfig
from .browser.config import BrowserConfig
from .db.config import HasuraConfig
from .errors import ConfigError
from .gitsync.config import GitSyncConfig
from .snapshots.config import SnapshotConfig

if TYPE_CHECKING:
    from collections.abc import Mapping

SandboxBackendName = Literal["local", "kubernetes", "container"]
LocalIsolation = Literal["auto", "bwrap", "none"]


#: URL prefixes of the PostgreSQL store.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def parse_database_url(env: Mapping[str, str]) -> str | None:
    """``AMICABLE_DATABASE_URL``, checked: empty, ``sqlite:///<path>`` or a PostgreSQL URL.

    Raises:
        ConfigError: any other scheme (the message never repeats the URL: it may hold a
            password).
    """
    url = string(env, "AMICABLE_DATABASE_URL", None)
    if url is None:
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
        data_dir: ``AMICABLE_DATA_DIR`` (workspaces, cache, SQLite file).
        database_url: ``AMICABLE_DATABASE_URL``: ``sqlite:///<path>`` (default
            ``<data_dir>/amicable.db``) or ``postgresql://user:pass@host/db`` (a store several
            agent replicas can share).
        sandbox_backend: ``AMICABLE_SANDBOX_BACKEND`` (``local`` | ``kubernetes`` | ``container``).
        warm_pool_size: ``AMICABLE_WARM_POOL_SIZE`` (local backend).
        spare_workspaces: ``AMICABLE_SPARE_WORKSPACES`` (local backend: complete project
            trees kept on disk for cold starts, no process; 0 disables).
        sandbox_idle_ttl_s: ``AMICABLE_SANDBOX_IDLE_TTL_S`` (0 = never stop idle sandboxes).
        session_idle_timeout_s: ``AMICABLE_SESSION_IDLE_TIMEOUT_S``.
        replica_id: ``AMICABLE_REPLICA_ID``: this process in the turn-lease table (default:
            host name, pid and a random tail).
        turn_lease_ttl_s: ``AMICABLE_TURN_LEASE_TTL_S`` (15): a replica that stopped
            renewing a project's lease this long ago loses it to another replica.
        turn_auto_retry: ``AMICABLE_TURN_AUTO_RETRY`` (off): the replica taking over a
            turn cut by its replica's death runs the request again.
        shutdown_grace_s: ``AMICABLE_SHUTDOWN_GRACE_S`` (25): after SIGTERM, how long
            running turns may finish before their leases are handed over.
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
        model_configured: ``ANTHROPIC_API_KEY`` (or ``_FILE``) is set, or the default model is
            an ``openai:`` one with a key or a base URL (the keys themselves are not kept
            here; the loop's settings decide, see ``loop/settings.py``).
        editor_dist: ``AMICABLE_EDITOR_DIST`` — the built editor served on ``/`` locally.
        runtime_command: how to start ``amicable-sandbox-runtime`` (``AMICABLE_RUNTIME_COMMAND``).
        template_id: default project template (``AMICABLE_DEFAULT_TEMPLATE``).
        templates: ``AMICABLE_TEMPLATES``: the template ids new projects may use (default
            every template of the registry, ``amicable_templates``); ``GET /api/templates``
            lists these. On Kubernetes the chart sets it to its enabled ``sandboxTemplates``.
        warm_pool_templates: ``AMICABLE_WARM_POOL_TEMPLATES``: local templates with a warm
            pool of ``warm_pool_size`` each (default the default template only).
        provision_timeout_s: deadline for creating/starting a sandbox.
        node_modules_cache_dir: ``AMICABLE_NODE_MODULES_CACHE_DIR`` (local backend npm
            cache; default ``<data_dir>/cache``).
        ws_send_queue_size: messages queued per socket before it counts as slow.
        max_prompt_chars: ``AMICABLE_MAX_PROMPT_CHARS``: the longest project prompt
            (``POST /api/projects``, 413 ``prompt_too_long``) and ``user`` message text
            (``error`` ``text_too_long``), in characters; at most the protocol's
            ``MAX_USER_TEXT_CHARS`` (the default), which decoding enforces anyway.
        hasura: the per-app database settings (``HASURA_*``, see
            :class:`amicable_agent.db.HasuraConfig`); None = feature off.
        git_sync: GitLab persistence settings (``GITLAB_*``, ``AMICABLE_GIT_SYNC_*``, see
            :class:`amicable_agent.gitsync.GitSyncConfig`); None or disabled = feature off.
        auth: login, origins and limits (``AUTH_MODE``, ``OIDC_*``, ``SESSION_*``,
            ``PUBLIC_BASE_URL``, ``AMICABLE_ALLOWED_ORIGINS``, ``AMICABLE_MAX_*``; see
            ``docs/auth.md``).
        checkpoint_max_file_bytes: ``AMICABLE_CHECKPOINT_MAX_FILE_BYTES``: files bigger than
            this are left out of checkpoints, with a note (0 = no limit).
        checkpoint_max_history_bytes: ``AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES``: past this a
            project's checkpoint history is garbage-collected, then new checkpoints are
            refused (0 = no cap).
        browser: the preview browser for screenshots (``AMICABLE_SCREENSHOT*``,
            ``AMICABLE_CHROMIUM_*``; see :class:`amicable_agent.browser.BrowserConfig`).
        snapshots: where project snapshots go (``AMICABLE_SNAPSHOT_*``, see
            :class:`amicable_agent.snapshots.SnapshotConfig`); None = the defaults (the store
            database, the cache under ``data_dir``). Snapshots are always on.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    internal_port: int = 8001
    internal_host: str = "127.0.0.1"
    data_dir: Path = attrs.field(factory=lambda: default_data_dir({}))
    database_url: str | None = attrs.field(default=None, repr=False)  # may hold a password
    sandbox_backend: SandboxBackendName = "local"
    warm_pool_size: int = 1
    spare_workspaces: int = 1
    sandbox_idle_ttl_s: float = 1800.0
    session_idle_timeout_s: float = 600.0
    replica_id: str | None = None
    turn_lease_ttl_s: float = 15.0
    turn_auto_retry: bool = False
    shutdown_grace_s: float = 25.0
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
    templates: tuple[str, ...] = attrs.field(factory=lambda: registry().ids)
    warm_pool_templates: tuple[str, ...] | None = None
    provision_timeout_s: float = 600.0
    node_modules_cache_dir: Path | None = None
    ws_send_queue_size: int = 256
    max_prompt_chars: int = MAX_USER_TEXT_CHARS
    hasura: HasuraConfig | None = attrs.field(default=None, repr=False)
    git_sync: GitSyncConfig | None = attrs.field(default=None, repr=False)
    auth: AuthConfig = attrs.field(factory=AuthConfig, repr=False)
    # The defaults of amicable_agent.sessions.checkpoints.CheckpointPolicy.
    checkpoint_max_file_bytes: int = 50 * 1024 * 1024
    checkpoint_max_history_bytes: int = 1024 * 1024 * 1024
    browser: BrowserConfig = attrs.field(factory=BrowserConfig)
    snapshots: SnapshotConfig | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        known = registry()
        for name, ids in (
            ("AMICABLE_TEMPLATES", self.templates),
            ("AMICABLE_WARM_POOL_TEMPLATES", self.warm_pool_templates or ()),
            ("AMICABLE_DEFAULT_TEMPLATE", (self.template_id,)),
        ):
            unknown = [t for t in ids if t not in known]
            if unknown:
                raise ConfigError(
                    f"{name}: unknown template(s) {', '.join(unknown)}; known: "
                    f"{', '.join(known.ids)}"
                )
        if not self.templates or self.template_id not in self.templates:
            raise ConfigError(
                f"AMICABLE_DEFAULT_TEMPLATE {self.template_id!r} is not in AMICABLE_TEMPLATES"
            )

    @property
    def pooled_templates(self) -> tuple[str, ...]:
        """The templates the local warm pool keeps sandboxes of."""
        if self.warm_pool_templates is None:
            return (self.template_id,)
        return tuple(t for t in self.warm_pool_templates if t in self.templates)

    @property
    def snapshot_config(self) -> SnapshotConfig:
        """:attr:`snapshots`, or the defaults for :attr:`data_dir`."""
        return self.snapshots or SnapshotConfig(cache_dir=self.data_dir / "snapshot-cache")

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
        from .db.config import hasura_config_from_env  # the db package imports this module
        from .gitsync.config import GitSyncConfig as _GitSyncConfig  # same

        with errors_as(ConfigError):
            data_dir = string(env, "AMICABLE_DATA_DIR", None)
            data_path = Path(data_dir) if data_dir else default_data_dir(env)
            dist = string(env, "AMICABLE_EDITOR_DIST", None)
            cache_dir = string(env, "AMICABLE_NODE_MODULES_CACHE_DIR", None)
            runtime_cmd = tuple(string(env, "AMICABLE_RUNTIME_COMMAND", "").split())
            base_domain = string(env, "PREVIEW_BASE_DOMAIN", "preview.localhost").strip(".")
            public_port = integer(env, "AMICABLE_PREVIEW_PUBLIC_PORT", 0, minimum=0, maximum=65535)
            api_key_set = any(
                string(env, name, None) for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY_FILE")
            )
            model = string(env, "DEEPAGENTS_MODEL", string(env, "AMICABLE_MODEL", ""))
            if model.startswith("openai:"):
                api_key_set = any(
                    string(env, name, None)
                    for name in ("OPENAI_API_KEY", "OPENAI_API_KEY_FILE", "OPENAI_BASE_URL")
                )
            return cls(
                host=string(env, "AMICABLE_AGENT_HOST", "127.0.0.1"),
                port=integer(env, "AMICABLE_AGENT_PORT", 8000, minimum=0, maximum=65535),
                internal_port=integer(
                    env, "AMICABLE_AGENT_INTERNAL_PORT", 8001, minimum=0, maximum=65535
                ),
                internal_host=string(env, "AMICABLE_AGENT_INTERNAL_HOST", "127.0.0.1"),
                data_dir=data_path,
                database_url=parse_database_url(env),
                sandbox_backend=choice(
                    env, "AMICABLE_SANDBOX_BACKEND", "local", ("local", "kubernetes", "container")
                ),
                warm_pool_size=integer(env, "AMICABLE_WARM_POOL_SIZE", 1, minimum=0),
                spare_workspaces=integer(env, "AMICABLE_SPARE_WORKSPACES", 1, minimum=0),
                sandbox_idle_ttl_s=seconds(env, "AMICABLE_SANDBOX_IDLE_TTL_S", 1800.0),
                session_idle_timeout_s=seconds(env, "AMICABLE_SESSION_IDLE_TIMEOUT_S", 600.0),
                replica_id=env.get("AMICABLE_REPLICA_ID") or None,
                turn_lease_ttl_s=seconds(env, "AMICABLE_TURN_LEASE_TTL_S", 15.0, positive=True),
                turn_auto_retry=boolean(env, "AMICABLE_TURN_AUTO_RETRY", False),
                shutdown_grace_s=seconds(env, "AMICABLE_SHUTDOWN_GRACE_S", 25.0),
                local_isolation=choice(
                    env, "AMICABLE_LOCAL_ISOLATION", "auto", ("auto", "bwrap", "none")
                ),
                sandbox_memory_bytes=integer(
                    env, "AMICABLE_SANDBOX_MEMORY_BYTES", 2 * 1024**3, minimum=0
                ),
                sandbox_pids_max=integer(env, "AMICABLE_SANDBOX_PIDS_MAX", 1024, minimum=0),
                sandbox_cpu_weight=integer(
                    env, "AMICABLE_SANDBOX_CPU_WEIGHT", 50, minimum=1, maximum=10000
                ),
                sandbox_disk_bytes=integer(
                    env, "AMICABLE_SANDBOX_DISK_BYTES", 4 * 1024**3, minimum=0
                ),
                sandbox_env_passthrough=comma_list(env, "AMICABLE_SANDBOX_ENV_PASSTHROUGH", ()),
                preview_base_domain=base_domain,
                preview_scheme=string(env, "PREVIEW_SCHEME", "http"),
                preview_public_port=public_port or None,
                preview_resolver_token=secret(env, "AMICABLE_PREVIEW_RESOLVER_TOKEN"),
                model_configured=api_key_set,
                editor_dist=Path(dist) if dist else None,
                runtime_command=runtime_cmd or ("amicable-sandbox-runtime",),
                template_id=string(env, "AMICABLE_DEFAULT_TEMPLATE", DEFAULT_TEMPLATE),
                templates=tuple(comma_list(env, "AMICABLE_TEMPLATES", registry().ids)),
                warm_pool_templates=_optional_ids(env, "AMICABLE_WARM_POOL_TEMPLATES"),
                node_modules_cache_dir=Path(cache_dir) if cache_dir else None,
                max_prompt_chars=integer(
                    env,
                    "AMICABLE_MAX_PROMPT_CHARS",
                    MAX_USER_TEXT_CHARS,
                    minimum=1,
                    maximum=MAX_USER_TEXT_CHARS,
                ),
                hasura=hasura_config_from_env(env),
                git_sync=_GitSyncConfig.from_env(env),
                auth=AuthConfig.from_env(env),
                checkpoint_max_file_bytes=integer(
                    env, "AMICABLE_CHECKPOINT_MAX_FILE_BYTES", 50 * 1024**2, minimum=0
                ),
                checkpoint_max_history_bytes=integer(
                    env, "AMICABLE_CHECKPOINT_MAX_HISTORY_BYTES", 1024**3, minimum=0
                ),
                browser=BrowserConfig.from_env(env),
                snapshots=SnapshotConfig.from_env(env, data_dir=data_path),
            )


def _optional_ids(env: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    value = comma_list(env, name, None)
    return None if value is None else tuple(value)


def random_token() -> str:
    """A fresh random secret (per-sandbox runtime tokens, the local resolver token)."""
    return secrets.token_urlsafe(32)

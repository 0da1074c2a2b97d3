"""GitLab persistence settings: one frozen attrs class, built once from the environment.

GitLab is optional: with no ``GITLAB_TOKEN`` sync is off and nothing else changes.
Unlike upstream there is no "sync required" mode; a sync failure is reported and never
blocks an edit, a turn or a project operation.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
from amicable_settings import boolean, choice, comma_list, errors_as, seconds, secret, string

from amicable_agent.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

Visibility = Literal["private", "internal", "public"]

#: Upstream's default excludes (gitignore-like: a trailing ``/`` means "a directory"; a
#: pattern with another ``/`` is anchored at the workspace root; otherwise it matches the
#: name at any depth).
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "node_modules/",
    "vendor/",
    ".git/",
    ".amicable/",
    "dist/",
    "build/",
    ".vite/",
    ".cache/",
    ".turbo/",
    "coverage/",
    "storage/",
    "bootstrap/cache/",
    ".env",
    ".env.*",
)
#: Always excluded, whatever ``AMICABLE_GIT_SYNC_EXCLUDES`` says: the sandbox's own ``.git``
#: must never reach our clone, ``.amicable/`` is platform state and ``amicable-db.js`` holds
#: the app's database key (written by the Hasura integration at INIT).
ALWAYS_EXCLUDED: tuple[str, ...] = (".git/", ".amicable/", "amicable-db.js")

_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,100}(?<![./])$")
_GROUP = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,200}$")


def scrub(text: str, token: str | None) -> str:
    """``text`` with the token (raw, and in any Basic-auth form we send) replaced by ``***``."""
    if not token:
        return text
    for hidden in (token, basic_credentials(token)):
        text = text.replace(hidden, "***")
    return text


def basic_credentials(token: str) -> str:
    """The base64 ``oauth2:<token>`` credentials GitLab accepts for git over HTTP."""
    return base64.b64encode(f"oauth2:{token}".encode()).decode("ascii")


@attrs.frozen
class GitSyncConfig:
    """How (and whether) projects are persisted to GitLab.

    Attributes:
        enabled: sync is on (``AMICABLE_GIT_SYNC_ENABLED``; default: on iff a token is set).
        token: ``GITLAB_TOKEN`` (or ``GITLAB_TOKEN_FILE``); never logged, never in argv/URLs.
        base_url: ``GITLAB_BASE_URL`` (``https://git.mayflower.de``).
        group_path: ``GITLAB_GROUP_PATH`` (``amicable``): the namespace of every repository.
        branch: ``AMICABLE_GIT_SYNC_BRANCH`` (``main``).
        cache_dir: ``AMICABLE_GIT_SYNC_CACHE_DIR`` (``/tmp/amicable-git-cache``): one git
            directory per project (keyed by project id, so renames keep it).
        excludes: ``AMICABLE_GIT_SYNC_EXCLUDES`` (comma list; replaces
            :data:`DEFAULT_EXCLUDES`; ``.git/`` and ``.amicable/`` are always added).
        visibility: ``AMICABLE_GITLAB_REPO_VISIBILITY`` (``internal``) of created repos.
        author_name: ``AMICABLE_GIT_COMMIT_AUTHOR_NAME`` (``amicable-bot``).
        author_email: ``AMICABLE_GIT_COMMIT_AUTHOR_EMAIL`` (``amicable@mayflower.de``).
        api_timeout_s: deadline of one GitLab REST call (``AMICABLE_GITLAB_API_TIMEOUT_S``).
        git_timeout_s: deadline of one git command (``AMICABLE_GIT_COMMAND_TIMEOUT_S``).
        push_attempts: pushes tried when the remote moved meanwhile (each on top of it).
        git_executable: the ``git`` program (tests wrap it to record argv).
    """

    enabled: bool = False
    token: str | None = attrs.field(default=None, repr=False)
    base_url: str = "https://git.mayflower.de"
    group_path: str = "amicable"
    branch: str = "main"
    cache_dir: Path = Path("/tmp/amicable-git-cache")  # upstream's default
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    visibility: Visibility = "internal"
    author_name: str = "amicable-bot"
    author_email: str = "amicable@mayflower.de"
    api_timeout_s: float = 30.0
    git_timeout_s: float = 120.0
    push_attempts: int = 3
    git_executable: str = "git"

    @property
    def effective_excludes(self) -> tuple[str, ...]:
        """``excludes`` plus :data:`ALWAYS_EXCLUDED` (deduplicated, order kept)."""
        return tuple(dict.fromkeys((*self.excludes, *ALWAYS_EXCLUDED)))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GitSyncConfig:
        """Build from environment variables (see the class docstring).

        Raises:
            ConfigError: a value is unusable, or sync is forced on without a token.
        """
        with errors_as(ConfigError):
            return cls._from_env(env)

    @classmethod
    def _from_env(cls, env: Mapping[str, str]) -> GitSyncConfig:
        token = secret(env, "GITLAB_TOKEN")
        enabled = boolean(env, "AMICABLE_GIT_SYNC_ENABLED", token is not None)
        if enabled and token is None:
            raise ConfigError("AMICABLE_GIT_SYNC_ENABLED is on but GITLAB_TOKEN is not set")

        d = cls()
        base_url = string(env, "GITLAB_BASE_URL", "").rstrip("/") or d.base_url
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError("GITLAB_BASE_URL must be an http(s) URL")
        group = string(env, "GITLAB_GROUP_PATH", "").strip("/") or d.group_path
        if not _GROUP.match(group) or ".." in group:
            raise ConfigError(f"GITLAB_GROUP_PATH: not a group path: {group!r}")
        branch = string(env, "AMICABLE_GIT_SYNC_BRANCH", d.branch)
        if not _BRANCH.match(branch) or branch.endswith(".lock"):
            raise ConfigError(f"AMICABLE_GIT_SYNC_BRANCH: not a branch name: {branch!r}")
        visibility: Visibility = choice(
            env, "AMICABLE_GITLAB_REPO_VISIBILITY", d.visibility, ("private", "internal", "public")
        )
        cache = string(env, "AMICABLE_GIT_SYNC_CACHE_DIR", None)
        return cls(
            enabled=enabled,
            token=token,
            base_url=base_url,
            group_path=group,
            branch=branch,
            cache_dir=Path(cache) if cache else d.cache_dir,
            excludes=comma_list(env, "AMICABLE_GIT_SYNC_EXCLUDES", DEFAULT_EXCLUDES),
            visibility=visibility,
            author_name=string(env, "AMICABLE_GIT_COMMIT_AUTHOR_NAME", d.author_name),
            author_email=string(env, "AMICABLE_GIT_COMMIT_AUTHOR_EMAIL", d.author_email),
            api_timeout_s=seconds(
                env, "AMICABLE_GITLAB_API_TIMEOUT_S", d.api_timeout_s, positive=True
            ),
            git_timeout_s=seconds(
                env, "AMICABLE_GIT_COMMAND_TIMEOUT_S", d.git_timeout_s, positive=True
            ),
        )

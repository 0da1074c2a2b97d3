"""What sync persists and answers: the repository record and the result bodies, and the
two small interfaces it needs from the rest of the agent (a project, a state store)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs
from amicable_protocol.messages import GitInfo

if TYPE_CHECKING:
    from .gitlab import GitLabProject

#: Key of the project's repository record in the store's per-project state.
REPO_STATE_KEY = "gitlab_repo"


class ProjectRef(Protocol):
    """What sync needs to know about a project (``store.Project`` and the protocol's
    ``ProjectInfo`` both fit)."""

    @property
    def project_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def slug(self) -> str: ...


class StateStore(Protocol):
    """The part of :class:`amicable_agent.store.base.Store` sync uses."""

    async def load_state(self, project_id: str, key: str) -> Any: ...

    async def save_state(self, project_id: str, key: str, value: Any) -> None: ...


@attrs.frozen
class RepoRecord:
    """The project's GitLab repository as persisted (``gitlab_*`` of upstream's row)."""

    gitlab_project_id: int
    gitlab_path: str
    gitlab_web_url: str
    http_url_to_repo: str

    @classmethod
    def of(cls, project: GitLabProject) -> RepoRecord:
        """The record of a GitLab project."""
        return cls(
            project.id, project.path_with_namespace, project.web_url, project.http_url_to_repo
        )

    def to_git_info(self) -> GitInfo:
        """The INIT ``git`` object as the protocol type."""
        return GitInfo(
            web_url=self.gitlab_web_url,
            path_with_namespace=self.gitlab_path,
            gitlab_project_id=self.gitlab_project_id,
            http_url_to_repo=self.http_url_to_repo,
        )

    def project_fields(self) -> dict[str, Any]:
        """The INIT ``project.gitlab_*`` fields (``attrs.evolve(info, **fields)``)."""
        return {
            "gitlab_project_id": self.gitlab_project_id,
            "gitlab_path": self.gitlab_path,
            "gitlab_web_url": self.gitlab_web_url,
        }

    def git_info(self) -> dict[str, Any]:
        """Upstream's INIT ``git`` object."""
        return {
            "web_url": self.gitlab_web_url,
            "path_with_namespace": self.gitlab_path,
            "gitlab_project_id": self.gitlab_project_id,
            "http_url_to_repo": self.http_url_to_repo,
        }


@attrs.frozen
class SyncResult:
    """Outcome of :meth:`GitSync.sync` (upstream's ``/git/sync`` body)."""

    pushed: bool
    commit_sha: str | None
    diff_stat: str = ""
    name_status: str = ""

    def to_json(self) -> dict[str, Any]:
        """The HTTP body."""
        return attrs.asdict(self)


@attrs.frozen
class StatusResult:
    """Outcome of :meth:`GitSync.status` (upstream's ``/git/status`` body)."""

    remote_sha: str | None
    local_sha: str | None
    ahead: bool
    baseline_present: bool
    conflicts_pending: bool

    def to_json(self) -> dict[str, Any]:
        """The HTTP body."""
        return attrs.asdict(self)

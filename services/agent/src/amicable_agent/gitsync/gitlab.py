"""A small GitLab REST v4 client: the project calls git sync needs, nothing else.

One :class:`httpx.AsyncClient` with the ``PRIVATE-TOKEN`` header and a deadline on every
request. Foreign errors become :class:`~amicable_agent.gitsync.errors.GitLabApiError` here.
A repository found at a project's path is adopted only if its description names the
project id (we write it on create), so a sandbox is never pushed over somebody else's repo.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs
import httpx
import trio

from amicable_agent.store.base import slug_candidates

from .config import scrub
from .errors import GitLabApiError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .config import GitSyncConfig

log = logging.getLogger(__name__)

TAKEN = "has already been taken"


@attrs.frozen
class GitLabProject:
    """A GitLab project (repository) as far as sync cares."""

    id: int
    path: str
    path_with_namespace: str
    web_url: str
    http_url_to_repo: str
    description: str = ""

    def git_info(self) -> dict[str, Any]:
        """Upstream's ``git`` DTO of INIT: ``{web_url, path_with_namespace, ...}``."""
        return {
            "web_url": self.web_url,
            "path_with_namespace": self.path_with_namespace,
            "gitlab_project_id": self.id,
            "http_url_to_repo": self.http_url_to_repo,
        }


def owner_marker(project_id: str) -> str:
    """The description written on create; a repo carrying it belongs to ``project_id``."""
    return f"Amicable project {project_id}"


def _project(body: Any) -> GitLabProject:
    try:
        return GitLabProject(
            id=int(body["id"]),
            path=str(body["path"]),
            path_with_namespace=str(body["path_with_namespace"]),
            web_url=str(body["web_url"]),
            http_url_to_repo=str(body["http_url_to_repo"]),
            description=str(body.get("description") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GitLabApiError(502, "unexpected project body") from exc


class GitLabClient:
    """GitLab REST v4 calls of one configured group. Create with :func:`open_gitlab_client`."""

    def __init__(self, client: httpx.AsyncClient, config: GitSyncConfig) -> None:
        self._client = client
        self._config = config

    async def _request(
        self, method: str, path: str, *, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        try:
            with trio.fail_after(self._config.api_timeout_s):
                return await self._client.request(method, "/api/v4" + path, json=body)
        except trio.TooSlowError as exc:
            raise GitLabApiError(0, f"{method} timed out") from exc
        except httpx.HTTPError as exc:
            raise GitLabApiError(0, f"{type(exc).__name__}") from exc

    def _error(self, response: httpx.Response) -> GitLabApiError:
        try:
            message: Any = response.json().get("message", response.text)
        except (ValueError, AttributeError):
            message = response.text
        if not isinstance(message, str):
            message = json.dumps(message, sort_keys=True)
        return GitLabApiError(response.status_code, scrub(message[:300], self._config.token))

    @staticmethod
    def _taken(response: httpx.Response) -> bool:
        return response.status_code in (400, 409) and TAKEN in response.text

    async def get_project(self, ref: int | str) -> GitLabProject | None:
        """A project by id or by full path (``group/slug``); None when it does not exist."""
        response = await self._request("GET", f"/projects/{quote(str(ref), safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self._error(response)
        return _project(response.json())

    async def namespace_id(self) -> int:
        """The id of the configured group (``GITLAB_GROUP_PATH``)."""
        group = quote(self._config.group_path, safe="")
        response = await self._request("GET", f"/groups/{group}")
        if response.status_code >= 400:
            raise self._error(response)
        try:
            return int(response.json()["id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GitLabApiError(502, "unexpected group body") from exc

    async def create_project(
        self, name: str, path: str, namespace_id: int, description: str
    ) -> GitLabProject | None:
        """Create a repository; None when the name or path is already taken."""
        response = await self._request(
            "POST",
            "/projects",
            body={
                "name": name,
                "path": path,
                "namespace_id": namespace_id,
                "visibility": self._config.visibility,
                "description": description,
            },
        )
        if self._taken(response):
            return None
        if response.status_code >= 400:
            raise self._error(response)
        return _project(response.json())

    async def update_project(self, gitlab_id: int, name: str, path: str) -> GitLabProject | None:
        """Rename (name and path); None when taken."""
        response = await self._request(
            "PUT", f"/projects/{gitlab_id}", body={"name": name, "path": path}
        )
        if self._taken(response):
            return None
        if response.status_code >= 400:
            raise self._error(response)
        return _project(response.json())

    async def delete_project(self, gitlab_id: int) -> bool:
        """Delete a repository; False (not an error) when it is already gone."""
        response = await self._request("DELETE", f"/projects/{gitlab_id}")
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise self._error(response)
        return True

    async def ensure_project(
        self, *, project_id: str, name: str, slug: str, known_id: int | None = None
    ) -> GitLabProject:
        """The project's repository, created if needed.

        Tries ``known_id``, then ``<group>/<slug>`` if it carries our marker, then creates it
        at ``slug`` or, when taken, at fallback slugs ``<slug>-<hex of project_id>``.

        Raises:
            GitLabApiError: GitLab failed, or every candidate path was taken.
        """
        if known_id is not None:
            found = await self.get_project(known_id)
            if found is not None:
                return found
        marker = owner_marker(project_id)
        namespace: int | None = None
        for index, path in enumerate(slug_candidates(slug, project_id)):
            existing = await self.get_project(f"{self._config.group_path}/{path}")
            if existing is not None:
                if marker in existing.description:
                    return existing
                continue
            if namespace is None:
                namespace = await self.namespace_id()
            title = name if index == 0 else f"{name} ({path})"
            created = await self.create_project(title, path, namespace, marker)
            if created is not None:
                log.info("created GitLab project %s", created.path_with_namespace)
                return created
        raise GitLabApiError(409, f"no free repository path for {slug!r}")

    async def rename_project(
        self, gitlab_id: int, *, project_id: str, name: str, slug: str
    ) -> GitLabProject:
        """Move a repository to the new slug (fallback slugs when taken).

        Raises:
            GitLabApiError: GitLab failed or every candidate path was taken.
        """
        for index, path in enumerate(slug_candidates(slug, project_id)):
            title = name if index == 0 else f"{name} ({path})"
            moved = await self.update_project(gitlab_id, title, path)
            if moved is not None:
                return moved
        raise GitLabApiError(409, f"no free repository path for {slug!r}")


@asynccontextmanager
async def open_gitlab_client(config: GitSyncConfig) -> AsyncIterator[GitLabClient]:
    """A client of ``config.base_url`` for the duration of the block."""
    headers = {"PRIVATE-TOKEN": config.token or ""}
    async with httpx.AsyncClient(
        base_url=config.base_url,
        headers=headers,
        timeout=httpx.Timeout(None),
        trust_env=False,
        follow_redirects=False,
    ) as client:
        yield GitLabClient(client, config)

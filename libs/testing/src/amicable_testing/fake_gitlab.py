"""A fake GitLab over real HTTP: REST v4 for the calls git sync makes, and git smart HTTP.

The REST part checks ``PRIVATE-TOKEN`` (or ``Authorization: Bearer``) and keeps projects in
memory; every project is a real bare repository under ``root`` served by ``git
http-backend`` (CGI), so real ``git fetch``/``git push`` run against it with the token
checked (Basic ``<any user>:<token>`` or Bearer). Knobs for tests: :attr:`FakeGitLab.
push_forbidden` (403 on push, as GitLab answers without write access), :attr:`requests`
(everything received, headers included), :attr:`max_concurrent_pushes`,
:attr:`before_push` (move the branch while a client pushes).

Usage::

    fake = FakeGitLab(tmp_path / "gitlab", token="secret")
    base_url = await nursery.start(fake.serve)
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, jsonify, request
from quart_trio import QuartTrio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@attrs.define
class FakeProject:
    """One repository."""

    id: int
    name: str
    path: str
    namespace_id: int
    namespace_path: str
    description: str = ""
    visibility: str = "private"

    @property
    def full_path(self) -> str:
        """``group/path``."""
        return f"{self.namespace_path}/{self.path}"


@attrs.frozen
class RecordedRequest:
    """A request as received."""

    method: str
    target: str
    headers: dict[str, str]


async def _kill_group(process: trio.Process) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class FakeGitLab:
    """The fake server's state. Groups exist from the start; projects are created by the
    client under test or by :meth:`add_project`."""

    def __init__(self, root: Path, *, token: str, groups: tuple[str, ...] = ("amicable",)) -> None:
        self.root = Path(root)
        self.token = token
        self.groups = {path: 100 + i for i, path in enumerate(groups)}
        self.projects: dict[int, FakeProject] = {}
        self.requests: list[RecordedRequest] = []
        self.push_forbidden = False
        #: One-shot hooks run when a push starts (before the refs are advertised), e.g. to
        #: move the branch meanwhile; each is removed once it ran.
        self.before_push: list[Callable[[FakeProject], Awaitable[None]]] = []
        self.max_concurrent_pushes = 0
        self._pushing = 0
        self._next_id = 1
        self.base_url = ""

    # --- state helpers for tests ---------------------------------------------------------

    def repo_dir(self, project: FakeProject) -> Path:
        """The bare repository of a project."""
        return self.root / project.namespace_path / f"{project.path}.git"

    def by_path(self, full_path: str) -> FakeProject | None:
        """A project by ``group/path``."""
        return next((p for p in self.projects.values() if p.full_path == full_path), None)

    async def add_project(
        self, path: str, *, name: str | None = None, group: str = "amicable", description: str = ""
    ) -> FakeProject:
        """Create a project directly (e.g. to make a path "already taken")."""
        project = FakeProject(
            self._next_id, name or path, path, self.groups[group], group, description
        )
        self._next_id += 1
        await self._init_repo(project)
        self.projects[project.id] = project
        return project

    async def _init_repo(self, project: FakeProject) -> None:
        repo = self.repo_dir(project)
        await trio.to_thread.run_sync(lambda: repo.parent.mkdir(parents=True, exist_ok=True))
        await trio.run_process(
            ["git", "init", "--bare", "--quiet", "--initial-branch=main", str(repo)],
            env=_git_env(),
        )
        await trio.run_process(
            ["git", f"--git-dir={repo}", "config", "http.receivepack", "true"], env=_git_env()
        )

    def _json(self, project: FakeProject) -> dict[str, Any]:
        web = f"{self.base_url}/{project.full_path}"
        return {
            "id": project.id,
            "name": project.name,
            "path": project.path,
            "path_with_namespace": project.full_path,
            "description": project.description,
            "visibility": project.visibility,
            "web_url": web,
            "http_url_to_repo": web + ".git",
            "namespace": {"id": project.namespace_id, "full_path": project.namespace_path},
        }

    def _find(self, ref: str) -> FakeProject | None:
        if ref.isdigit():
            return self.projects.get(int(ref))
        return self.by_path(ref)

    def _taken(self, namespace: str, name: str, path: str, skip: int | None) -> Response | None:
        errors: dict[str, list[str]] = {}
        for p in self.projects.values():
            if p.namespace_path != namespace or p.id == skip:
                continue
            if p.path == path:
                errors["path"] = ["has already been taken"]
            if p.name == name:
                errors["name"] = ["has already been taken"]
        if not errors:
            return None
        resp = jsonify({"message": errors})
        resp.status_code = 400
        return resp

    # --- auth ------------------------------------------------------------------------------

    def _api_authorised(self) -> bool:
        if request.headers.get("PRIVATE-TOKEN") == self.token:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _git_authorised(self) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {self.token}":
            return True
        if auth.startswith("Basic "):
            try:
                _, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return password == self.token
        return False

    # --- app -------------------------------------------------------------------------------

    def app(self) -> QuartTrio:
        """The quart app (REST + git)."""
        app = QuartTrio("fake_gitlab")

        @app.before_request
        async def record() -> Response | None:
            target = request.full_path.rstrip("?")
            self.requests.append(RecordedRequest(request.method, target, dict(request.headers)))
            if request.path.startswith("/api/v4/") and not self._api_authorised():
                resp = jsonify({"message": "401 Unauthorized"})
                resp.status_code = 401
                return resp
            return None

        @app.get("/api/v4/groups/<path:ref>")
        async def group(ref: str) -> Response:
            if ref.isdigit():
                ref = next((k for k, v in self.groups.items() if v == int(ref)), "")
            if ref not in self.groups:
                return _not_found("404 Group Not Found")
            return jsonify({"id": self.groups[ref], "full_path": ref, "path": ref})

        @app.post("/api/v4/projects")
        async def create() -> Response:
            body = await request.get_json(force=True)
            namespace = next(
                (k for k, v in self.groups.items() if v == body.get("namespace_id")), None
            )
            if namespace is None:
                return _not_found("404 Namespace Not Found")
            name, path = str(body["name"]), str(body.get("path") or body["name"])
            taken = self._taken(namespace, name, path, None)
            if taken is not None:
                return taken
            project = FakeProject(
                self._next_id,
                name,
                path,
                self.groups[namespace],
                namespace,
                str(body.get("description") or ""),
                str(body.get("visibility") or "private"),
            )
            self._next_id += 1
            await self._init_repo(project)
            self.projects[project.id] = project
            resp = jsonify(self._json(project))
            resp.status_code = 201
            return resp

        @app.get("/api/v4/projects/<path:ref>")
        async def get(ref: str) -> Response:
            project = self._find(ref)
            if project is None:
                return _not_found("404 Project Not Found")
            return jsonify(self._json(project))

        @app.put("/api/v4/projects/<path:ref>")
        async def update(ref: str) -> Response:
            project = self._find(ref)
            if project is None:
                return _not_found("404 Project Not Found")
            body = await request.get_json(force=True)
            name = str(body.get("name") or project.name)
            path = str(body.get("path") or project.path)
            taken = self._taken(project.namespace_path, name, path, project.id)
            if taken is not None:
                return taken
            old = self.repo_dir(project)
            project.name, project.path = name, path
            new = self.repo_dir(project)
            if old != new:
                await trio.to_thread.run_sync(old.rename, new)
            return jsonify(self._json(project))

        @app.delete("/api/v4/projects/<path:ref>")
        async def delete(ref: str) -> Response:
            project = self._find(ref)
            if project is None:
                return _not_found("404 Project Not Found")
            del self.projects[project.id]
            repo = self.repo_dir(project)
            await trio.to_thread.run_sync(lambda: shutil.rmtree(repo, ignore_errors=True))
            resp = jsonify({"message": "202 Accepted"})
            resp.status_code = 202
            return resp

        @app.route("/<path:rel>", methods=["GET", "POST"])
        async def git(rel: str) -> Response:
            return await self._git(rel)

        return app

    async def _git(self, rel: str) -> Response:
        repo_path, sep, _ = rel.partition(".git/")
        project = self.by_path(repo_path) if sep else None
        if project is None:
            return Response("Not Found\n", status=404)
        if not self._git_authorised():
            return Response(
                "HTTP Basic: Access denied\n",
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="GitLab"'},
            )
        pushing = request.args.get("service") == "git-receive-pack" or rel.endswith(
            "git-receive-pack"
        )
        if pushing and self.push_forbidden:
            return Response("You are not allowed to push code to this project.\n", status=403)
        if pushing and request.method == "GET" and self.before_push:
            await self.before_push.pop(0)(project)
        raw = await request.get_data(as_text=False)
        body = raw if isinstance(raw, bytes) else raw.encode()
        if pushing and request.method == "POST":
            self._pushing += 1
            self.max_concurrent_pushes = max(self.max_concurrent_pushes, self._pushing)
        try:
            return await self._cgi(rel, body)
        finally:
            if pushing and request.method == "POST":
                self._pushing -= 1

    async def _cgi(self, rel: str, body: bytes) -> Response:
        env = {
            **_git_env(),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "amicable",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": "/" + rel,
            "QUERY_STRING": request.query_string.decode(),
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if request.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
        if request.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        with trio.fail_after(60):
            proc = await trio.run_process(
                ["git", "http-backend"],
                stdin=body,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
                start_new_session=True,
                deliver_cancel=_kill_group,
            )
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _ and b"\n\n" in proc.stdout:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        return Response(payload, status=status, headers=headers)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve on a free loopback port; ``task_status.started(base_url)``."""
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1.0

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn_serve, self.app(), config)
            self.base_url = binds[0]
            task_status.started(self.base_url)


def _not_found(message: str) -> Response:
    resp = jsonify({"message": message})
    resp.status_code = 404
    return resp


def _git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }

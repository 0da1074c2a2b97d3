"""Fixtures for git sync: the fake GitLab (real HTTP + real git), a recording git wrapper,
an in-memory state store, a directory-backed workspace and a real sandbox runtime."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tarfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.gitsync import GitSync, GitSyncConfig, open_git_sync
from amicable_agent.gitsync.workspace import extract_tree
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.store.base import Project
from amicable_testing.fake_gitlab import FakeGitLab, FakeProject

TOKEN = "glpat-SeCrEt-Token-0123456789"
RUNTIME_TOKEN = "runtime-token-for-gitsync-tests"


class MemoryStateStore:
    """The ``load_state``/``save_state`` part of the store, in memory."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], Any] = {}

    async def load_state(self, project_id: str, key: str) -> Any:
        await trio.lowlevel.checkpoint()
        return json.loads(json.dumps(self.state.get((project_id, key))))

    async def save_state(self, project_id: str, key: str, value: Any) -> None:
        await trio.lowlevel.checkpoint()
        if value is None:
            self.state.pop((project_id, key), None)
        else:
            self.state[(project_id, key)] = json.loads(json.dumps(value))


class DirWorkspace:
    """A Workspace over a local directory (the archive is built like the runtime's)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def download_tree(self, dest: Path, patterns: Sequence[str]) -> list[str]:
        await trio.lowlevel.checkpoint()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for path in sorted(self.root.rglob("*")):
                tar.add(path, arcname=path.relative_to(self.root).as_posix(), recursive=False)
        archive = dest.parent / "dir.tar.gz"
        archive.write_bytes(buf.getvalue())
        return extract_tree(archive, dest, patterns)

    async def read(self, path: str) -> bytes | None:
        await trio.lowlevel.checkpoint()
        target = self.root / path.lstrip("/")
        return target.read_bytes() if target.is_file() else None

    async def write(self, path: str, content: bytes) -> None:
        await trio.lowlevel.checkpoint()
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    async def remove(self, path: str) -> None:
        await trio.lowlevel.checkpoint()
        (self.root / path.lstrip("/")).unlink(missing_ok=True)


def make_project(
    slug: str = "demo-app", project_id: str = "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc"
) -> Project:
    return Project(project_id, "Demo App", slug, "vite", None, "make a demo", 0.0, 0.0)


def populate(root: Path) -> None:
    """A small app plus everything that must not be committed."""
    files = {
        "package.json": '{"name": "demo"}\n',
        "index.html": "<div id=root></div>\n",
        "src/App.tsx": "export default function App() { return <h1>Hi</h1>; }\n",
        "src/old.ts": "export const old = 1;\n",
        "scripts/run.sh": "#!/bin/sh\necho run\n",
        "node_modules/react/index.js": "module.exports = {};\n",
        "dist/bundle.js": "built\n",
        ".env": "SECRET=1\n",
        "src/.env.local": "SECRET=2\n",
        ".cache/x": "cache\n",
        ".git/HEAD": "ref: refs/heads/evil\n",
        ".amicable/notes": "platform\n",
    }
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "scripts/run.sh").chmod(0o755)


async def git_out(*args: str) -> str:
    proc = await trio.run_process(
        ["git", *args], capture_stdout=True, capture_stderr=True,
        env={"PATH": os.environ["PATH"], "HOME": os.devnull, "GIT_CONFIG_GLOBAL": os.devnull},
    )  # fmt: skip
    return proc.stdout.decode().strip()


async def remote_files(fake: FakeGitLab, project: FakeProject, ref: str = "main") -> dict[str, str]:
    repo = str(fake.repo_dir(project))
    names = await git_out(f"--git-dir={repo}", "ls-tree", "-r", "--name-only", ref)
    out = {}
    for name in names.splitlines():
        out[name] = await git_out(f"--git-dir={repo}", "show", f"{ref}:{name}")
    return out


@pytest.fixture
async def gitlab(nursery: trio.Nursery, tmp_path: Path) -> FakeGitLab:
    fake = FakeGitLab(tmp_path / "gitlab", token=TOKEN)
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
def argv_log(tmp_path: Path) -> Path:
    return tmp_path / "git-argv.log"


@pytest.fixture
def git_wrapper(tmp_path: Path, argv_log: Path) -> str:
    """A ``git`` that appends its argv to a log, then runs the real git."""
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec git "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def sync_config(gitlab: FakeGitLab, tmp_path: Path, git_wrapper: str) -> GitSyncConfig:
    return GitSyncConfig(
        enabled=True,
        token=TOKEN,
        base_url=gitlab.base_url,
        group_path="amicable",
        cache_dir=tmp_path / "git-cache",
        git_executable=git_wrapper,
        api_timeout_s=30.0,
        git_timeout_s=60.0,
    )


@pytest.fixture
def state_store() -> MemoryStateStore:
    return MemoryStateStore()


@pytest.fixture
async def git_sync(
    sync_config: GitSyncConfig, state_store: MemoryStateStore
) -> AsyncIterator[GitSync]:
    async with open_git_sync(sync_config, state_store) as gs:
        assert gs is not None
        yield gs


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    populate(root)
    return root


@pytest.fixture
def workspace(workspace_dir: Path) -> DirWorkspace:
    return DirWorkspace(workspace_dir)


@pytest.fixture
async def runtime_handle(workspace_dir: Path, tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    """A real ``amicable-sandbox-runtime`` process serving ``workspace_dir``."""
    ready = tmp_path / "ready.json"
    exe = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
    env = {
        **os.environ,
        "AMICABLE_RUNTIME_TOKEN": RUNTIME_TOKEN,
        "AMICABLE_RUNTIME_HOST": "127.0.0.1",
    }
    proc = await trio.lowlevel.open_process(
        [exe, "--no-preview", "--port", "0", "--ready-file", str(ready), "--workspace", str(workspace_dir)],
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        with trio.fail_after(30):
            while not ready.exists() or not ready.read_text().strip():
                await trio.sleep(0.05)
        port = json.loads(ready.read_text())["port"]
        yield SandboxHandle("amicable-test", f"http://127.0.0.1:{port}", RUNTIME_TOKEN, "")
    finally:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

"""Path confinement: lexical escapes, NUL bytes, absolute paths, symlinks (also swapped late)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from amicable_sandbox_runtime.errors import InvalidPath, NotFound
from amicable_sandbox_runtime.files import Files
from amicable_sandbox_runtime.paths import Jail, normalize

if TYPE_CHECKING:
    from conftest import Runtime

SECRET = b"outside-secret"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace holding a file the API must never reveal."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_bytes(SECRET)
    return d


def test_normalize() -> None:
    assert normalize("/src/App.tsx") == "/src/App.tsx"
    assert normalize("src//./a/../b") == "/src/b"
    assert normalize("") == "/"
    for bad in ("..", "/../etc/passwd", "a/../../b", "a\x00b"):
        with pytest.raises(InvalidPath):
            normalize(bad)


def test_jail_unit(tmp_path: Path, outside: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "a.txt").write_text("a")
    os.symlink("src", ws / "inner")  # relative link inside: allowed
    os.symlink(ws / "src" / "a.txt", ws / "abs-inside")  # absolute link into the workspace
    os.symlink(outside, ws / "out")
    os.symlink("../../outside/secret.txt", ws / "src" / "up")
    os.symlink("loop", ws / "loop")
    jail = Jail(ws)
    files = Files(jail, max_file_bytes=1024)
    try:
        assert files.read("/inner/a.txt")[0] == b"a"
        assert files.read("abs-inside")[0] == b"a"
        for bad in ("/out/secret.txt", "out", "src/up", "/src/../../outside/secret.txt", "loop"):
            with pytest.raises(InvalidPath):
                files.read(bad)
        with pytest.raises(InvalidPath):
            files.write("/out/new.txt", b"x")
        with pytest.raises(NotFound):
            files.read("/nope/x")
        # deleting a link removes the link, never its target
        files.delete("/out")
        assert (outside / "secret.txt").read_bytes() == SECRET
    finally:
        jail.close()
    assert not (outside / "new.txt").exists()


async def raw_get(runtime: Runtime, raw_path: str) -> httpx.Response:
    """GET with the path sent exactly as written (no client-side dot-segment removal)."""
    url = httpx.URL(runtime.url).copy_with(raw_path=raw_path.encode())
    return await runtime.client.get(url)


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v1/files/../../etc/passwd",
        "/v1/files/%2e%2e/%2e%2e/etc/passwd",
        "/v1/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/v1/files/src/..%2f..%2f..%2fetc%2fpasswd",
        "/v1/files/a%00b",
        "/v1/files/..",
    ],
)
async def test_traversal_is_rejected(runtime: Runtime, raw_path: str) -> None:
    resp = await raw_get(runtime, raw_path)
    assert resp.status_code in (400, 404)
    assert b"root:" not in resp.content
    if resp.status_code == 400:
        assert resp.json()["error"] == "invalid_path"


async def test_encoded_dotdot_is_invalid_path(runtime: Runtime) -> None:
    resp = await raw_get(runtime, "/v1/files/%2e%2e/%2e%2e/etc/passwd")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_path"


async def test_absolute_path_means_workspace_root(runtime: Runtime) -> None:
    resp = await raw_get(runtime, "/v1/files//etc/passwd")
    assert resp.status_code == 404  # the workspace's /etc/passwd, which does not exist
    (runtime.workspace / "etc").mkdir()
    (runtime.workspace / "etc" / "passwd").write_text("workspace file")
    resp = await raw_get(runtime, "/v1/files//etc/passwd")
    assert resp.content == b"workspace file"


async def test_symlink_to_etc_is_rejected(runtime: Runtime) -> None:
    os.symlink("/etc", runtime.workspace / "etc-link")
    os.symlink("/etc/passwd", runtime.workspace / "passwd-link")
    for path in ("etc-link/passwd", "passwd-link"):
        resp = await runtime.client.get(f"/v1/files/{path}")
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_path"
    resp = await runtime.client.put("/v1/files/etc-link/evil", content=b"x")
    assert resp.json()["error"] == "invalid_path"
    assert not Path("/etc/evil").exists()
    for body in ({"pattern": "root", "path": "etc-link"}, {"pattern": "root"}):
        resp = await runtime.client.post("/v1/fs/grep", json=body)
        assert b"root:x" not in resp.content
    resp = await runtime.client.post("/v1/exec", json={"command": "true", "cwd": "etc-link"})
    assert resp.json()["error"] == "invalid_path"


async def test_body_paths_are_jailed(runtime: Runtime, outside: Path) -> None:
    (runtime.workspace / "a.txt").write_text("a")
    cases = [
        ("/v1/fs/move", {"from": "a.txt", "to": "../outside/moved.txt"}),
        ("/v1/fs/move", {"from": "../outside/secret.txt", "to": "stolen.txt"}),
        ("/v1/fs/mkdir", {"path": "../outside/newdir"}),
        ("/v1/fs/edit", {"path": "../outside/secret.txt", "old_string": "o", "new_string": "x"}),
        ("/v1/fs/glob", {"pattern": "*", "path": "../outside"}),
    ]
    for route, body in cases:
        resp = await runtime.client.post(route, json=body)
        assert resp.status_code == 400, (route, body)
        assert resp.json()["error"] == "invalid_path"
    resp = await runtime.client.get("/v1/fs/tree", params={"path": "../outside"})
    assert resp.json()["error"] == "invalid_path"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == SECRET


async def test_symlink_swapped_after_creation(runtime: Runtime, outside: Path) -> None:
    ws = runtime.workspace
    (ws / "src").mkdir()
    (ws / "src" / "secret.txt").write_bytes(b"inside")
    assert (await runtime.client.get("/v1/files/src/secret.txt")).content == b"inside"
    # swap the directory for a link pointing outside, after it was used
    os.rename(ws / "src", ws / "src-old")
    os.symlink(outside, ws / "src")
    resp = await runtime.client.get("/v1/files/src/secret.txt")
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_path"
    # and the final component swapped for a link
    (ws / "f.txt").write_text("inside")
    os.unlink(ws / "f.txt")
    os.symlink(outside / "secret.txt", ws / "f.txt")
    assert (await runtime.client.get("/v1/files/f.txt")).json()["error"] == "invalid_path"
    put = await runtime.client.put("/v1/files/f.txt", content=b"overwrite")
    assert put.json()["error"] == "invalid_path"
    assert (outside / "secret.txt").read_bytes() == SECRET


async def test_symlink_race_never_leaks(runtime: Runtime, outside: Path) -> None:
    """A thread flips ``d`` between a real directory and a link out while we read."""
    ws = runtime.workspace
    real = ws / "real"
    real.mkdir()
    (real / "secret.txt").write_bytes(b"inside")
    stop = threading.Event()

    def flipper() -> None:
        while not stop.is_set():
            for target in (real, outside):
                tmp = ws / "d.tmp"
                os.symlink(target, tmp)
                os.replace(tmp, ws / "d")

    thread = threading.Thread(target=flipper)
    thread.start()
    seen: set[bytes] = set()
    try:
        for _ in range(200):
            resp = await runtime.client.get("/v1/files/d/secret.txt")
            seen.add(resp.content if resp.status_code == 200 else resp.json()["error"].encode())
    finally:
        stop.set()
        await trio.to_thread.run_sync(thread.join)
    assert SECRET not in seen
    assert seen <= {b"inside", b"invalid_path", b"not_found"}

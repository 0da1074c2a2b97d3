"""File API: read/write with hashes, conditional writes, edit semantics, tree/glob/grep, archive."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Runtime, StartRuntime


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_put_get_roundtrip(runtime: Runtime) -> None:
    resp = await runtime.client.put("/v1/files/src/deep/App.tsx", content=b"export {}\n")
    assert resp.status_code == 200
    assert resp.json() == {"path": "/src/deep/App.tsx", "sha256": sha(b"export {}\n"), "size": 10}
    got = await runtime.client.get("/v1/files//src/deep/App.tsx")
    assert got.content == b"export {}\n"
    assert got.headers["X-Content-SHA256"] == sha(b"export {}\n")


async def test_get_errors(runtime: Runtime) -> None:
    missing = await runtime.client.get("/v1/files/missing.txt")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    (runtime.workspace / "dir").mkdir()
    for path in ("dir", "", "/"):
        resp = await runtime.client.get(f"/v1/files/{path}")
        assert (resp.status_code, resp.json()["error"]) == (400, "is_directory"), path


async def test_conflict_writes(runtime: Runtime) -> None:
    first = (await runtime.client.put("/v1/files/a.txt", content=b"one")).json()
    ok = await runtime.client.put(
        "/v1/files/a.txt", content=b"two", headers={"If-Match": first["sha256"]}
    )
    assert ok.status_code == 200
    stale = await runtime.client.put(
        "/v1/files/a.txt", content=b"three", headers={"If-Match": first["sha256"]}
    )
    assert (stale.status_code, stale.json()["error"]) == (409, "conflict")
    assert (runtime.workspace / "a.txt").read_bytes() == b"two"
    missing = await runtime.client.put(
        "/v1/files/new.txt", content=b"x", headers={"If-Match": sha(b"x")}
    )
    assert missing.status_code == 409
    assert not (runtime.workspace / "new.txt").exists()


async def test_write_keeps_mode_and_replaces_hard_links(runtime: Runtime) -> None:
    ws = runtime.workspace
    (ws / "run.sh").write_text("old")
    os.chmod(ws / "run.sh", 0o755)
    os.link(ws / "run.sh", ws / "cache-copy")  # like node_modules hard-linked from the cache
    await runtime.client.put("/v1/files/run.sh", content=b"new")
    assert (ws / "run.sh").read_text() == "new"
    assert os.stat(ws / "run.sh").st_mode & 0o777 == 0o755
    assert (ws / "cache-copy").read_text() == "old"


async def test_too_large(start_runtime: StartRuntime) -> None:
    runtime = await start_runtime(max_file_bytes=1000)
    resp = await runtime.client.put("/v1/files/big.bin", content=b"x" * 1001)
    assert (resp.status_code, resp.json()["error"]) == (413, "too_large")
    assert not (runtime.workspace / "big.bin").exists()
    assert (await runtime.client.put("/v1/files/ok.bin", content=b"x" * 1000)).status_code == 200
    (runtime.workspace / "made-by-a-command.bin").write_bytes(b"x" * 1001)
    resp = await runtime.client.get("/v1/files/made-by-a-command.bin")
    assert (resp.status_code, resp.json()["error"]) == (413, "too_large")


async def test_edit_semantics(runtime: Runtime) -> None:
    ws = runtime.workspace
    (ws / "f.ts").write_text("a = 1\nb = 1\n")

    async def edit(**body: object) -> tuple[int, dict[str, object]]:
        resp = await runtime.client.post("/v1/fs/edit", json={"path": "/f.ts", **body})
        return resp.status_code, resp.json()

    status, body = await edit(old_string="= 1", new_string="= 2")
    assert (status, body["error"]) == (409, "conflict")
    assert "2 times" in str(body["detail"])
    status, body = await edit(old_string="= 3", new_string="= 2")
    assert (status, body["error"]) == (409, "conflict")
    assert "not found" in str(body["detail"])
    assert (ws / "f.ts").read_text() == "a = 1\nb = 1\n"
    status, body = await edit(old_string="a = 1", new_string="a = 10")
    assert status == 200
    assert body["replacements"] == 1
    assert (ws / "f.ts").read_text() == "a = 10\nb = 1\n"
    assert body["sha256"] == sha(b"a = 10\nb = 1\n")
    status, body = await edit(old_string=" = ", new_string=" := ", replace_all=True)
    assert (status, body["replacements"]) == (200, 2)
    assert (ws / "f.ts").read_text() == "a := 10\nb := 1\n"
    resp = await runtime.client.post(
        "/v1/fs/edit", json={"path": "nope.ts", "old_string": "a", "new_string": "b"}
    )
    assert (resp.status_code, resp.json()["error"]) == (404, "not_found")
    resp = await runtime.client.post("/v1/fs/edit", json={"path": "f.ts", "old_string": "a"})
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
    assert "new_string" in resp.json()["detail"]


async def test_delete_move_mkdir(runtime: Runtime) -> None:
    ws = runtime.workspace
    c = runtime.client
    assert (await c.post("/v1/fs/mkdir", json={"path": "a/b/c"})).json() == {"path": "/a/b/c"}
    assert (await c.post("/v1/fs/mkdir", json={"path": "a/b/c"})).status_code == 200
    (ws / "a/b/c/f.txt").write_text("x")
    resp = await c.post("/v1/fs/move", json={"from": "a/b/c/f.txt", "to": "/g/h.txt"})
    assert resp.json() == {"path": "/g/h.txt"}
    assert (ws / "g/h.txt").read_text() == "x"
    (ws / "other.txt").write_text("y")
    resp = await c.post("/v1/fs/move", json={"from": "other.txt", "to": "g/h.txt"})
    assert (resp.status_code, resp.json()["error"]) == (409, "conflict")
    resp = await c.post("/v1/fs/move", json={"from": "ghost", "to": "x"})
    assert resp.status_code == 404
    resp = await c.delete("/v1/files/a")
    assert (resp.status_code, resp.json()["error"]) == (409, "conflict")
    assert (await c.delete("/v1/files/a", params={"recursive": "1"})).status_code == 200
    assert not (ws / "a").exists()
    assert (await c.delete("/v1/files/other.txt")).status_code == 200
    assert (await c.delete("/v1/files/other.txt")).status_code == 404
    resp = await c.delete("/v1/files/", params={"recursive": "1"})
    assert resp.json()["error"] == "invalid_path"
    assert ws.exists()


async def test_tree(runtime: Runtime) -> None:
    ws = runtime.workspace
    (ws / "src").mkdir()
    (ws / "src/App.tsx").write_text("app")
    (ws / ".env").write_text("SECRET=1")
    (ws / "node_modules/react").mkdir(parents=True)
    (ws / "node_modules/react/index.js").write_text("")
    os.symlink("src", ws / "link")
    entries = (await runtime.client.get("/v1/fs/tree")).json()["entries"]
    by_path = {e["path"]: e for e in entries}
    assert set(by_path) == {"/link", "/node_modules", "/src", "/src/App.tsx"}
    assert by_path["/src/App.tsx"]["kind"] == "file"
    assert by_path["/src/App.tsx"]["size"] == 3
    assert by_path["/src"]["kind"] == "dir"
    assert by_path["/link"]["kind"] == "symlink"
    assert by_path["/src/App.tsx"]["mtime_ns"] > 0
    params = {"include_hidden": "1", "depth": "1"}
    entries = (await runtime.client.get("/v1/fs/tree", params=params)).json()["entries"]
    assert {e["path"] for e in entries} == {"/.env", "/link", "/node_modules", "/src"}
    params = {"include_skipped": "1", "path": "/node_modules"}
    entries = (await runtime.client.get("/v1/fs/tree", params=params)).json()["entries"]
    assert "/node_modules/react/index.js" in {e["path"] for e in entries}


async def test_glob_and_grep(runtime: Runtime) -> None:
    ws = runtime.workspace
    (ws / "src/components").mkdir(parents=True)
    (ws / "src/App.tsx").write_text("import Button from './components/Button'\nconst x = 1\n")
    (ws / "src/components/Button.tsx").write_text("export default function Button() {}\n")
    (ws / "src/style.css").write_text("a { color: red }\n")
    (ws / "node_modules/x").mkdir(parents=True)
    (ws / "node_modules/x/Button.tsx").write_text("Button")
    (ws / "bin.dat").write_bytes(b"\x00Button")
    glob = (await runtime.client.post("/v1/fs/glob", json={"pattern": "**/*.tsx"})).json()
    assert glob["paths"] == ["/src/App.tsx", "/src/components/Button.tsx"]
    glob = await runtime.client.post(
        "/v1/fs/glob", json={"pattern": "*.{css,tsx}", "path": "/src/components"}
    )
    assert glob.json()["paths"] == ["/src/components/Button.tsx"]
    grep = (await runtime.client.post("/v1/fs/grep", json={"pattern": r"Button\b"})).json()
    assert [(m["path"], m["line"]) for m in grep["matches"]] == [
        ("/src/App.tsx", 1),
        ("/src/components/Button.tsx", 1),
    ]
    grep = await runtime.client.post(
        "/v1/fs/grep", json={"pattern": "x = 1", "fixed_strings": True, "glob": "*.tsx"}
    )
    assert grep.json()["matches"] == [{"path": "/src/App.tsx", "line": 2, "text": "const x = 1"}]
    bad = await runtime.client.post("/v1/fs/grep", json={"pattern": "("})
    assert bad.json()["error"] == "invalid_request"


async def test_grep_output_is_bounded(runtime: Runtime) -> None:
    (runtime.workspace / "many.txt").write_text("hit " + "y" * 2000 + "\n" * 1 + "hit\n" * 500)
    grep = await runtime.client.post("/v1/fs/grep", json={"pattern": "hit", "max_results": 50})
    body = grep.json()
    assert len(body["matches"]) == 50
    assert body["truncated"] is True
    assert len(body["matches"][0]["text"]) == 500


async def test_archive(runtime: Runtime) -> None:
    ws = runtime.workspace
    (ws / "src").mkdir()
    (ws / "src/App.tsx").write_text("app")
    (ws / ".env.local").write_text("SECRET=1")
    (ws / "node_modules/x").mkdir(parents=True)
    (ws / "dist").mkdir()
    (ws / "notes.log").write_text("log")
    os.symlink("/etc/passwd", ws / "pw")
    resp = await runtime.client.get("/v1/archive", params=[("exclude", "*.log")])
    assert resp.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r:gz") as tar:
        names = set(tar.getnames())
        assert tar.extractfile("src/App.tsx").read() == b"app"  # type: ignore[union-attr]
        assert tar.getmember("pw").issym()
    assert names == {"src", "src/App.tsx", "pw"}


async def test_zip_archive(runtime: Runtime) -> None:
    ws = runtime.workspace
    (ws / "src").mkdir()
    (ws / "src/App.tsx").write_text("app")
    (ws / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(ws / "run.sh", 0o755)
    (ws / ".env").write_text("SECRET=1")
    (ws / "node_modules/x").mkdir(parents=True)
    (ws / "big.bin").write_bytes(os.urandom(300_000))
    os.symlink("src/App.tsx", ws / "app-link")
    resp = await runtime.client.get("/v1/archive", params={"format": "zip"})
    assert resp.headers["content-type"] == "application/zip"
    assert 'filename="workspace.zip"' in resp.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert zf.testzip() is None
        assert set(zf.namelist()) == {"src/", "src/App.tsx", "run.sh", "big.bin", "app-link"}
        assert zf.read("src/App.tsx") == b"app"
        assert zf.read("big.bin") == (ws / "big.bin").read_bytes()
        assert (zf.getinfo("run.sh").external_attr >> 16) & 0o777 == 0o755
        link = zf.getinfo("app-link")
        assert stat.S_ISLNK(link.external_attr >> 16)
        assert zf.read(link) == b"src/App.tsx"
    bad = await runtime.client.get("/v1/archive", params={"format": "rar"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")


async def test_fifo_is_not_read(runtime: Runtime) -> None:
    os.mkfifo(runtime.workspace / "pipe")
    resp = await runtime.client.get("/v1/files/pipe")
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")

"""A checkpoint's diff (``GET /api/sandbox/<id>/checkpoints/<sha>/diff``): real git in a
workspace, the parsing of what git prints, and the route of a real agent server."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from amicable_agent.errors import CheckpointError
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sessions._diff_scripts import DiffLimits
from amicable_agent.sessions.checkpoints import BASELINE_TITLE, Checkpoints, valid_diff_sha
from amicable_protocol import structure
from amicable_protocol.http import CheckpointDiff
from amicable_testing.logins import ALICE, BOB, Site
from amicable_testing.workspace_runtime import WorkspaceRuntime

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "App.tsx").write_text("one\ntwo\nthree\n")
    (root / "src" / "old name.ts").write_text("export const x = 1\n" * 20)
    (root / "gone.txt").write_text("bye\n")
    return root


def test_valid_diff_sha_is_strictly_4_to_64_hex_digits() -> None:
    assert valid_diff_sha("ABCD") == "abcd"
    assert valid_diff_sha("a" * 64) == "a" * 64
    for bad in ("abc", "a" * 65, "zzzz", "HEAD", "abcd;rm", " abcd", "abcd\n", "-abcd", ""):
        assert valid_diff_sha(bad) is None, bad


async def test_diff_of_a_turn_lists_hunks_renames_deletions_and_binary_files(
    project: Path,
) -> None:
    cps = Checkpoints(WorkspaceRuntime(project))
    await cps.ensure()
    (project / "src" / "App.tsx").write_text("one\n2\nthree\nfour\n")
    (project / "src" / "old name.ts").rename(project / "src" / "new name.ts")
    (project / "gone.txt").unlink()
    (project / "logo.png").write_bytes(PNG)
    made = await cps.create("A turn")
    assert made is not None

    diff = await cps.diff(made.sha[:4].upper())
    assert (diff.sha, diff.title) == (made.sha, "A turn")
    assert diff.parent == git(project, "rev-parse", "HEAD^").strip()
    by_path = {f.path: f for f in diff.files}
    assert sorted(by_path) == ["/gone.txt", "/logo.png", "/src/App.tsx", "/src/new name.ts"]
    app = by_path["/src/App.tsx"]
    assert (app.status, app.additions, app.deletions, app.binary, app.too_large) == (
        "modified",
        2,
        1,
        False,
        False,
    )
    [hunk] = app.hunks
    assert (hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines) == (1, 3, 1, 4)
    assert hunk.lines == (" one", "-two", "+2", " three", "+four")
    renamed = by_path["/src/new name.ts"]
    assert (renamed.status, renamed.old_path, renamed.hunks) == (
        "renamed",
        "/src/old name.ts",
        (),
    )
    assert by_path["/gone.txt"].status == "deleted"
    assert by_path["/gone.txt"].hunks[0].lines == ("-bye",)
    logo = by_path["/logo.png"]
    assert (logo.status, logo.binary, logo.hunks, logo.too_large) == ("added", True, (), False)
    assert (diff.files_changed, diff.additions, diff.deletions) == (4, 2, 2)
    assert diff.truncated is False


async def test_the_first_checkpoint_diffs_against_nothing(project: Path) -> None:
    cps = Checkpoints(WorkspaceRuntime(project))
    await cps.ensure()
    [baseline] = await cps.list()
    diff = await cps.diff(baseline.sha)
    assert (diff.parent, diff.title) == (None, BASELINE_TITLE)
    assert {f.path: f.status for f in diff.files} == {
        "/gone.txt": "added",
        "/src/App.tsx": "added",
        "/src/old name.ts": "added",
    }
    app = next(f for f in diff.files if f.path == "/src/App.tsx")
    assert app.hunks[0].lines == ("+one", "+two", "+three")


async def test_a_big_diff_is_capped_with_a_too_large_marker(project: Path) -> None:
    cps = Checkpoints(WorkspaceRuntime(project))
    await cps.ensure()
    # One file over the per-file cap, one small file after it (git's path order).
    (project / "a-big.js").write_text("".join(f"const v{i} = {i}\n" for i in range(5_000)))
    (project / "src" / "App.tsx").write_text("one\n")
    made = await cps.create("Big")
    assert made is not None
    diff = await cps.diff(made.sha)
    big, small = diff.files
    assert (big.path, big.too_large, big.hunks, big.additions) == ("/a-big.js", True, (), 5_000)
    assert (small.path, small.too_large) == ("/src/App.tsx", False)
    assert small.hunks[0].lines == (" one", "-two", "-three")
    assert diff.truncated is True

    # The whole diff over its cap: the files after the cut are named, without hunks.
    tiny = DiffLimits(max_diff_bytes=200, max_file_diff_bytes=200, max_listing_bytes=30_000)
    capped = await cps.diff(made.sha, tiny)
    assert [(f.path, f.too_large, f.hunks) for f in capped.files] == [
        ("/a-big.js", True, ()),
        ("/src/App.tsx", True, ()),
    ]
    assert (capped.files_changed, capped.additions) == (2, 5_000)

    # Listings cut short: the files past the cut are counted but not listed.
    listing = DiffLimits(max_listing_bytes=14)
    cut = await cps.diff(made.sha, listing)
    assert [f.path for f in cut.files] == ["/a-big.js"]
    assert (cut.files_changed, cut.truncated) == (2, True)


async def test_unknown_and_malformed_checkpoints(project: Path) -> None:
    cps = Checkpoints(WorkspaceRuntime(project))
    with pytest.raises(CheckpointError) as info:
        await cps.diff("abcdef0")  # no repository yet
    assert info.value.code == "not_found"
    await cps.ensure()
    with pytest.raises(CheckpointError) as info:
        await cps.diff("abcdef0")
    assert info.value.code == "not_found"
    tree = git(project, "rev-parse", "HEAD^{tree}").strip()
    with pytest.raises(CheckpointError) as info:
        await cps.diff(tree)  # an object, but not a commit
    assert info.value.code == "not_found"
    with pytest.raises(ValueError, match="4-64 hex digits"):
        await cps.diff("HEAD~1")


async def test_diff_api(api: Any) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Shop"})).json()["project_id"]
    base = f"/api/sandbox/{pid}/checkpoints"
    ws = api.workspaces / sandbox_id_for(pid)
    ws.mkdir(parents=True)
    (ws / "index.html").write_text("one\n")
    cps = Checkpoints(WorkspaceRuntime(ws))
    await cps.ensure()
    (ws / "index.html").write_text("two\n")
    (ws / "favicon.ico").write_bytes(PNG)
    made = await cps.create("Second")
    assert made is not None

    r = await c.get(f"{base}/{made.sha}/diff")
    assert r.status_code == 200, r.text
    body = structure(r.json(), CheckpointDiff, strict=True)  # exactly the protocol's shape
    assert [(f.path, f.binary) for f in body.files] == [
        ("/favicon.ico", True),
        ("/index.html", False),
    ]
    assert body.files[1].hunks[0].lines == ("-one", "+two")

    hostile = ["abc", "a" * 65, "zzzzzzz", "HEAD", "HEAD~1", "abcd%3Brm%20-rf", "--output=x"]
    hostile += ["%2e%2e", "abcd%00", "abcd%20"]
    for bad in hostile:
        r = await c.get(f"{base}/{bad}/diff")
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert r.json() == {"error": "invalid_sha", "detail": "a checkpoint id is 4-64 hex digits"}
    r = await c.get(f"{base}/{'f' * 40}/diff")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await c.get(
        f"/api/sandbox/00000000-0000-4000-8000-000000000000/checkpoints/{made.sha}/diff"
    )
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    assert (ws / "index.html").read_text() == "two\n"  # reading a diff changes nothing
    assert git(ws, "status", "--porcelain") == ""


async def test_a_viewer_reads_a_diff_and_a_stranger_cannot(site: Site) -> None:
    async with site.signed_in(ALICE) as alice, site.signed_in(BOB) as bob:
        pid = (await alice.post("/api/projects", json={"name": "Team"})).json()["project_id"]
        url = f"/api/sandbox/{pid}/checkpoints/{'a' * 40}/diff"
        stranger = await bob.get(url)
        assert (stranger.status_code, stranger.json()["error"]) == (404, "not_found")
        await alice.post(
            f"/api/projects/{pid}/members", json={"email": "bob@example.com", "role": "viewer"}
        )
        as_viewer = await bob.get(url)
        # Past the role check: the project's sandbox is asked (this site has no workspace).
        assert as_viewer.status_code not in (401, 403, 404), as_viewer.text
        assert as_viewer.json()["error"] != "read_only"

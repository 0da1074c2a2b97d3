"""Archives from a sandbox are checked before the agent extracts or hands them on: a sparse
"bomb", too many members, links out of the project, and the download endpoint's refusal."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import trio
from amicable_agent.errors import UnsafeArchive
from amicable_agent.gitsync.workspace import extract_tree
from amicable_agent.sandboxes.archives import ArchiveLimits, check_archive, link_stays_inside
from amicable_agent.sandboxes.base import sandbox_id_for


async def sparse_bomb(tmp_path: Path) -> Path:
    """GNU tar of a 1 GiB sparse file: a few kilobytes that unpack to a gibibyte."""
    big = tmp_path / "bomb" / "zeros.bin"
    big.parent.mkdir()
    with big.open("wb") as fh:
        fh.truncate(1024**3)
    archive = tmp_path / "bomb.tar.gz"
    await trio.run_process(["tar", "-czSf", str(archive), "-C", str(big.parent), "zeros.bin"])
    return archive


def tar_of(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            data = b"x" * member.size if member.isfile() else None
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def entry(name: str, *, link: str | None = None, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = size
    return info


async def test_a_sparse_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    archive = await sparse_bomb(tmp_path)
    assert archive.stat().st_size < 1024 * 1024
    with pytest.raises(UnsafeArchive) as refused:
        check_archive(archive, "tar.gz", ArchiveLimits(uncompressed_bytes=512 * 1024**2))
    assert refused.value.code == "too_large"
    dest = tmp_path / "tree"
    with pytest.raises(UnsafeArchive):
        extract_tree(archive, dest, [], ArchiveLimits(uncompressed_bytes=512 * 1024**2))
    assert not (dest / "zeros.bin").exists()


def test_member_count_is_capped(tmp_path: Path) -> None:
    archive = tar_of(tmp_path / "many.tar.gz", [entry(f"f{i}") for i in range(50)])
    check_archive(archive, "tar.gz", ArchiveLimits(members=50))
    with pytest.raises(UnsafeArchive) as refused:
        check_archive(archive, "tar.gz", ArchiveLimits(members=49))
    assert refused.value.code == "too_large"


@pytest.mark.parametrize(
    ("link", "safe"),
    [("../index.html", True), ("sub/x", True), ("../../etc/passwd", False),
     ("/etc/passwd", False), ("../..", False), ("", False)],
)  # fmt: skip
def test_links_must_stay_in_the_project(tmp_path: Path, link: str, safe: bool) -> None:
    assert link_stays_inside("src/link", link) is safe
    archive = tar_of(tmp_path / "a.tar.gz", [entry("src/ok.txt"), entry("src/link", link=link)])
    if safe:
        check_archive(archive, "tar.gz", ArchiveLimits())
    else:
        with pytest.raises(UnsafeArchive, match="points outside"):
            check_archive(archive, "tar.gz", ArchiveLimits())


def test_zip_links_and_names(tmp_path: Path) -> None:
    def zipped(name: str, data: bytes, mode: int) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
        return path

    check_archive(zipped("src/a.txt", b"x", stat.S_IFREG | 0o644), "zip", ArchiveLimits())
    check_archive(zipped("src/l", b"../a.txt", stat.S_IFLNK | 0o777), "zip", ArchiveLimits())
    for name, data, mode in [
        ("src/l", b"/etc/passwd", stat.S_IFLNK | 0o777),
        ("../../escape.txt", b"x", stat.S_IFREG | 0o644),
        ("/abs.txt", b"x", stat.S_IFREG | 0o644),
    ]:
        with pytest.raises(UnsafeArchive):
            check_archive(zipped(name, data, mode), "zip", ArchiveLimits())


async def test_download_refuses_an_archive_with_a_link_out_of_the_project(api: Any) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Linky"})).json()["project_id"]
    await c.post(f"/api/sandbox/{pid}/create", json={"path": "src/App.tsx", "kind": "file",
                                                      "content": "v1"})  # fmt: skip
    ws = api.workspaces / sandbox_id_for(pid)
    fine = await c.get(f"/api/sandbox/{pid}/download", params={"format": "tar.gz"})
    assert fine.status_code == 200
    (ws / "src" / "passwd").symlink_to("/etc/passwd")
    refused = await c.get(f"/api/sandbox/{pid}/download", params={"format": "tar.gz"})
    assert (refused.status_code, refused.json()["error"]) == (502, "unsafe_archive")

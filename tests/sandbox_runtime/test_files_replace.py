"""Replacing a file: swapped in atomically (RENAME_EXCHANGE) or renamed over as a fallback;
no temporary file left behind, readers of the old file undisturbed, mode kept, a write
through a symlink replaces its target, a directory that appears meanwhile is put back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from amicable_sandbox_runtime import files as files_mod
from amicable_sandbox_runtime.errors import IsDirectory
from amicable_sandbox_runtime.files import Files, exchange
from amicable_sandbox_runtime.paths import Jail


@pytest.fixture
def files(tmp_path: Path) -> Files:
    jail = Jail(tmp_path)
    yield Files(jail, max_file_bytes=1 << 20)
    jail.close()


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*amicable-*.tmp")]


def test_exchange_swaps_two_entries(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("A")
    (tmp_path / "b").write_text("B")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert exchange(fd, "a", "b") is True  # ext4 and tmpfs support it
        with pytest.raises(FileNotFoundError):
            exchange(fd, "a", "missing")
    finally:
        os.close(fd)
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("B", "A")


@pytest.mark.parametrize("swap", [True, False], ids=["exchange", "rename-fallback"])
def test_replace_keeps_readers_mode_and_leaves_nothing(
    files: Files, tmp_path: Path, swap: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not swap:
        monkeypatch.setattr(files_mod, "exchange", lambda *a: False)
    target = tmp_path / "src" / "App.tsx"
    target.parent.mkdir()
    target.write_bytes(b"old")
    target.chmod(0o600)
    before = target.stat().st_ino
    with target.open("rb") as reader:
        result = files.write("/src/App.tsx", b"new content")
        assert reader.read() == b"old"  # an open reader keeps the old file
    assert target.read_bytes() == b"new content"
    assert target.stat().st_ino != before
    assert target.stat().st_mode & 0o777 == 0o600
    assert result.size == len(b"new content")
    assert leftovers(tmp_path) == []
    for _ in range(3):
        files.write("/src/App.tsx", b"again")
    assert leftovers(tmp_path) == []
    assert target.read_bytes() == b"again"


def test_writing_through_a_workspace_symlink_replaces_its_target(
    files: Files, tmp_path: Path
) -> None:
    (tmp_path / "real.txt").write_text("real")
    (tmp_path / "real.txt").chmod(0o640)
    (tmp_path / "link.txt").symlink_to("real.txt")
    result = files.write("/link.txt", b"plain")
    assert result.path == "/real.txt"
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_bytes() == b"plain"
    assert (tmp_path / "real.txt").stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_a_directory_that_appears_after_the_check_is_put_back(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "thing"
    target.write_text("file")
    real_exchange = files_mod.exchange
    raced: list[bool] = []

    def racing_exchange(dir_fd: int, a: str, b: str) -> bool:
        # another process replaces the file with a directory between stat and swap
        if not raced:
            raced.append(True)
            (tmp_path / b).unlink()
            (tmp_path / b).mkdir()
            (tmp_path / b / "keep.txt").write_text("kept")
        return real_exchange(dir_fd, a, b)

    monkeypatch.setattr(files_mod, "exchange", racing_exchange)
    with pytest.raises(IsDirectory):
        files.write("/thing", b"new")
    assert (target / "keep.txt").read_text() == "kept"
    assert leftovers(tmp_path) == []

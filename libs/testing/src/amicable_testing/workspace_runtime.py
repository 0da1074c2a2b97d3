"""An in-process :class:`~amicable_agent.loop.api.RuntimeClient` over a local directory.

For tests of the agent loop without the sandbox runtime service: files live in ``root``,
commands run with ``trio`` in their own process group (killed as a group when the caller
cancels or leaves an ``open_exec_stream`` block early), and the dev-server calls answer a fixed status.
"""

from __future__ import annotations

import codecs
import contextlib
import fnmatch
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from amicable_agent.errors import RuntimeClientError
from amicable_protocol.runtime import (
    EditResult,
    EntryKind,
    ExecExit,
    ExecOutput,
    ExecResult,
    GlobResult,
    GrepMatch,
    GrepResult,
    PreviewLogs,
    PreviewStatus,
    TreeEntry,
    TreeResult,
    WriteResult,
)

#: The sandbox runtime's default archive excludes.
ARCHIVE_DEFAULT_EXCLUDES = ("node_modules", ".git", "dist", "build", ".env*", ".cache", ".vite")


def _build_archive(root: Path, fmt: str, patterns: Sequence[str]) -> bytes:
    buf = io.BytesIO()

    def skipped(rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)

    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        dirnames[:] = sorted(
            d for d in dirnames if not skipped(f"{rel_dir}/{d}".removeprefix("./"))
        )
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}".removeprefix("./")
            if not skipped(rel):
                entries.append((rel, base / name))
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel, path in entries:
                zf.write(path, rel)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for rel, path in entries:
                tar.add(path, rel, recursive=False)
    return buf.getvalue()


if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Sequence

_SKIP_DIRS = {"node_modules", ".git"}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class WorkspaceRuntime:
    """A RuntimeClient whose workspace is the directory ``root``.

    Attributes:
        exec_log: every command started, in order (tests assert on it).
        preview_log_lines: what :meth:`preview_logs` returns.
    """

    def __init__(self, root: Path, *, exec_timeout_s: float = 600.0) -> None:
        self.root = Path(root).resolve()
        self.exec_timeout_s = exec_timeout_s
        self.exec_log: list[str] = []
        self.preview_log_lines: list[str] = []

    # --- paths -------------------------------------------------------------------------

    def _real(self, path: str) -> Path:
        if "\x00" in path:
            raise RuntimeClientError(400, "invalid_path", "NUL byte in path")
        rel = path.lstrip("/")
        real = (self.root / rel).resolve() if rel else self.root
        if real != self.root and self.root not in real.parents:
            raise RuntimeClientError(400, "invalid_path", f"{path} leaves the workspace")
        return real

    def _public(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return "/" if rel == "." else "/" + rel

    # --- files -------------------------------------------------------------------------

    async def read_file(self, path: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        await trio.lowlevel.checkpoint()
        real = self._real(path)
        if real.is_dir():
            raise RuntimeClientError(400, "is_directory", path)
        if not real.is_file():
            raise RuntimeClientError(404, "not_found", path)
        if max_bytes is not None and real.stat().st_size > max_bytes:
            raise RuntimeClientError(413, "too_large", f"{path} is over {max_bytes} bytes")
        data = real.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    async def write_file(
        self, path: str, content: bytes, *, if_match: str | None = None
    ) -> WriteResult:
        await trio.lowlevel.checkpoint()
        real = self._real(path)
        if real.is_dir():
            raise RuntimeClientError(400, "is_directory", path)
        if if_match is not None:
            current = hashlib.sha256(real.read_bytes()).hexdigest() if real.exists() else ""
            if current != if_match:
                raise RuntimeClientError(409, "conflict", "If-Match does not match")
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(content)
        return WriteResult(self._public(real), hashlib.sha256(content).hexdigest(), len(content))

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        await trio.lowlevel.checkpoint()
        real = self._real(path)
        if not real.exists():
            raise RuntimeClientError(404, "not_found", path)
        if real.is_dir():
            if not recursive:
                raise RuntimeClientError(400, "is_directory", path)
            shutil.rmtree(real)
        else:
            real.unlink()

    async def move(self, src: str, dst: str) -> None:
        await trio.lowlevel.checkpoint()
        source, target = self._real(src), self._real(dst)
        if not source.exists():
            raise RuntimeClientError(404, "not_found", src)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)

    async def mkdir(self, path: str) -> None:
        await trio.lowlevel.checkpoint()
        self._real(path).mkdir(parents=True, exist_ok=True)

    async def edit(
        self, path: str, old_string: str, new_string: str, *, replace_all: bool = False
    ) -> EditResult:
        data, _sha = await self.read_file(path)
        text = data.decode("utf-8")
        count = text.count(old_string) if old_string else 0
        if count == 0:
            raise RuntimeClientError(409, "conflict", "old_string not found")
        if count > 1 and not replace_all:
            raise RuntimeClientError(
                409, "conflict", f"old_string occurs {count} times; use replace_all"
            )
        new = text.replace(old_string, new_string) if replace_all else text.replace(
            old_string, new_string, 1)  # fmt: skip
        written = await self.write_file(path, new.encode("utf-8"))
        return EditResult(written.path, count if replace_all else 1, written.sha256)

    async def tree(
        self, path: str = "/", *, depth: int | None = None, include_hidden: bool = False
    ) -> TreeResult:
        await trio.lowlevel.checkpoint()
        base = self._real(path)
        if not base.is_dir():
            raise RuntimeClientError(404, "not_found", path)
        entries: list[TreeEntry] = []

        def walk(directory: Path, level: int) -> None:
            for child in sorted(directory.iterdir()):
                if not include_hidden and child.name.startswith("."):
                    continue
                st = child.lstat()
                kind: EntryKind = (
                    "symlink" if child.is_symlink() else "dir" if child.is_dir() else "file"
                )
                entries.append(
                    TreeEntry(self._public(child), kind, st.st_size, st.st_mtime_ns, st.st_mode)
                )
                if (
                    kind == "dir"
                    and child.name not in _SKIP_DIRS
                    and (depth is None or level + 1 < depth)
                ):
                    walk(child, level + 1)

        walk(base, 0)
        return TreeResult(self._public(base), tuple(entries))

    def _files(self, base: Path) -> list[Path]:
        out: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            out.extend(Path(dirpath) / f for f in sorted(filenames))
        return out

    async def glob(self, pattern: str, path: str = "/") -> GlobResult:
        await trio.lowlevel.checkpoint()
        base = self._real(path)
        pat = pattern.lstrip("/")
        paths = []
        for real in self._files(base):
            rel = real.relative_to(base).as_posix()
            if fnmatch.fnmatch(rel, pat) or (
                pat.startswith("**/") and fnmatch.fnmatch(rel, pat[3:])
            ):
                paths.append(self._public(real))
        return GlobResult(tuple(paths[:1000]), truncated=len(paths) > 1000)

    async def grep(
        self,
        pattern: str,
        path: str = "/",
        *,
        glob: str | None = None,
        fixed_strings: bool = False,
        max_results: int = 200,
    ) -> GrepResult:
        await trio.lowlevel.checkpoint()
        try:
            regex = re.compile(re.escape(pattern) if fixed_strings else pattern)
        except re.error as exc:
            raise RuntimeClientError(400, "invalid_request", f"bad pattern: {exc}") from exc
        base = self._real(path)
        files = [base] if base.is_file() else self._files(base)
        matches: list[GrepMatch] = []
        for real in files:
            if (
                glob
                and not fnmatch.fnmatch(real.name, glob)
                and not fnmatch.fnmatch(real.relative_to(self.root).as_posix(), glob.lstrip("/"))
            ):
                continue
            try:
                lines = real.read_text(encoding="utf-8").splitlines()
            except (UnicodeDecodeError, OSError):
                continue
            for number, line in enumerate(lines, start=1):
                if regex.search(line):
                    matches.append(GrepMatch(self._public(real), number, line[:500]))
                    if len(matches) >= max_results:
                        return GrepResult(tuple(matches), truncated=True)
        return GrepResult(tuple(matches))

    # --- exec --------------------------------------------------------------------------

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        return {**os.environ, **(env or {})}

    async def exec(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ExecResult:
        self.exec_log.append(command)
        start = trio.current_time()

        async def kill(proc: trio.Process) -> None:
            _kill_group(proc.pid)

        timed_out = False
        with trio.move_on_after(timeout_s or self.exec_timeout_s) as scope:
            done = await trio.run_process(
                ["sh", "-c", command],
                cwd=self._real(cwd or "/"),
                env=self._env(env),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                start_new_session=True,
                deliver_cancel=kill,
            )
        if scope.cancelled_caught:
            timed_out = True
            return ExecResult(124, "", "timed out", False, True, int(
                (trio.current_time() - start) * 1000))  # fmt: skip
        return ExecResult(
            done.returncode if done.returncode >= 0 else 128 - done.returncode,
            done.stdout.decode("utf-8", errors="replace"),
            done.stderr.decode("utf-8", errors="replace"),
            False,
            timed_out,
            int((trio.current_time() - start) * 1000),
        )

    @contextlib.asynccontextmanager
    async def open_exec_stream(
        self,
        command: str,
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[AsyncIterator[ExecOutput | ExecExit]]:
        """Stream merged output; leaving the block early or cancelling kills the group."""
        items = self._exec_items(command, cwd=cwd, env=env, timeout_s=timeout_s)
        async with contextlib.aclosing(items):
            yield items

    async def _exec_items(
        self,
        command: str,
        *,
        cwd: str | None,
        env: dict[str, str] | None,
        timeout_s: float | None,
    ) -> AsyncGenerator[ExecOutput | ExecExit]:
        self.exec_log.append(command)
        start = trio.current_time()
        deadline = start + (timeout_s or self.exec_timeout_s)
        proc = await trio.lowlevel.open_process(
            ["sh", "-c", command],
            cwd=self._real(cwd or "/"),
            env=self._env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        timed_out = False
        try:
            while True:
                with trio.move_on_at(deadline) as scope:
                    data = await proc.stdout.receive_some(65536)
                if scope.cancelled_caught:
                    timed_out = True
                    _kill_group(proc.pid)
                    break
                if not data:
                    break
                text = decoder.decode(data)
                if text:
                    yield ExecOutput("stdout", text)
            with trio.move_on_at(deadline) as scope:
                code = await proc.wait()
            if scope.cancelled_caught:
                timed_out = True
            yield ExecExit(
                124 if timed_out else (code if code >= 0 else 128 - code),
                timed_out,
                int((trio.current_time() - start) * 1000),
            )
        finally:
            _kill_group(proc.pid)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await proc.wait()
                await proc.stdout.aclose()

    # --- dev server --------------------------------------------------------------------

    async def preview_status(self) -> PreviewStatus:
        await trio.lowlevel.checkpoint()
        return PreviewStatus("running", None, 0, 5, None, 0, True)

    async def preview_restart(self) -> PreviewStatus:
        return await self.preview_status()

    async def preview_logs(self, tail: int = 200) -> PreviewLogs:
        await trio.lowlevel.checkpoint()
        return PreviewLogs(tuple(self.preview_log_lines[-tail:]))

    async def archive(
        self, fmt: str = "tar.gz", *, excludes: Sequence[str] = (), default_excludes: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """The tree as ``tar.gz`` or ``zip`` (built whole in a thread, yielded in chunks)."""
        if fmt not in ("tar.gz", "zip"):
            raise RuntimeClientError(400, "invalid_request", f"unknown format {fmt!r}")
        patterns = (*(ARCHIVE_DEFAULT_EXCLUDES if default_excludes else ()), *excludes)
        data = await trio.to_thread.run_sync(_build_archive, self.root, fmt, patterns)
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

"""The agent's own copy of a project's history: a bare repository per project, where every
bundle a sandbox hands over is checked before it is stored.

A bundle from a sandbox is untrusted. Before it is stored, :meth:`Mirror.apply` indexes its
pack with ``index-pack --strict`` (every object checked, the pack's checksum, every object
linked to present: the prerequisites are commits the stored history has) and checks that the
new head continues the stored one, fast-forward only. The mirror then holds exactly the stored
history, which also makes compaction cheap (:meth:`Mirror.write_full`).

The mirror is a cache: the store is the truth. A missing or stale mirror (another replica
appended, the agent restarted, the cache was wiped) is rebuilt from the stored chain. Git
runs with no system or global config, no hooks, in its own process group (killed as a group
on cancellation) under a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import trio

from amicable_agent.errors import SnapshotError

from .bundle import MAX_HEADER_BYTES, SNAPSHOT_REF

if TYPE_CHECKING:
    from pathlib import Path

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "LC_ALL": "C",
    "GIT_CONFIG_COUNT": "5",
    "GIT_CONFIG_KEY_0": "core.hooksPath",
    "GIT_CONFIG_VALUE_0": os.devnull,
    "GIT_CONFIG_KEY_1": "transfer.fsckObjects",
    "GIT_CONFIG_VALUE_1": "true",
    "GIT_CONFIG_KEY_2": "gc.auto",
    "GIT_CONFIG_VALUE_2": "0",
    "GIT_CONFIG_KEY_3": "safe.directory",
    "GIT_CONFIG_VALUE_3": "*",
    "GIT_CONFIG_KEY_4": "maintenance.auto",  # never `git maintenance run` behind our back
    "GIT_CONFIG_VALUE_4": "false",
}


async def _kill_group(process: trio.Process) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _pack_offset(bundle: Path) -> int:
    """Where the pack starts: after the header's empty line (checked by the caller)."""
    with bundle.open("rb") as f:
        start = f.read(MAX_HEADER_BYTES)
    end = start.find(b"\n\n")
    if end < 0:
        raise SnapshotError("invalid_bundle", "the bundle header has no end")
    return end + 2


def _write_ref(path: Path, oid: str) -> None:
    """Write a loose ref atomically (the mirror never packs its refs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.lock")
    tmp.write_text(oid + "\n")
    os.replace(tmp, path)


def safe_name(project_id: str) -> str:
    """A file name for a project id (anything but ``[A-Za-z0-9_-]`` replaced)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in project_id) or "_"


class Mirror:
    """The bare repository ``<cache_dir>/<project>.git``.

    Args:
        path: the repository's directory.
        git_executable: the git to run.
        timeout_s: deadline of each git command.

    Cancellation: a cancelled command's process group is killed; a fetch cut half-way
    leaves the ref where it was (git updates it last), so the mirror stays consistent.
    """

    def __init__(
        self, path: Path, *, git_executable: str = "git", timeout_s: float = 300.0
    ) -> None:
        self.path = path
        self._git = git_executable
        self._timeout_s = timeout_s
        self._env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_GIT_ENV}

    async def _run(self, *args: str, check: bool = True, stdin: Any = b"") -> tuple[int, str, str]:
        argv = [self._git, f"--git-dir={self.path}", *args]
        try:
            with trio.fail_after(self._timeout_s):
                proc = await trio.run_process(
                    argv,
                    stdin=stdin,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=self._env,
                    cwd=str(self.path.parent),
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
        except trio.TooSlowError as exc:
            raise SnapshotError(
                "failed", f"git {args[0]} took over {self._timeout_s:.0f}s"
            ) from exc
        except OSError as exc:
            raise SnapshotError("failed", f"cannot run git: {exc}") from exc
        out = proc.stdout.decode("utf-8", "replace").strip()
        err = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        if check and proc.returncode != 0:
            raise SnapshotError("failed", f"git {args[0]} exited {proc.returncode}: {err}")
        return proc.returncode, out, err

    async def head(self) -> str | None:
        """The history's head (None when the mirror is missing or empty)."""
        exists = await trio.to_thread.run_sync((self.path / "HEAD").exists)
        if not exists:
            return None
        code, out, _ = await self._run("rev-parse", "-q", "--verify", SNAPSHOT_REF, check=False)
        return out if code == 0 and out else None

    async def reset(self) -> None:
        """Start over with an empty repository."""

        def wipe() -> None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)

        await trio.to_thread.run_sync(wipe)
        await self._run("init", "-q", "--bare", str(self.path))

    async def remove(self) -> None:
        """Delete the mirror (the project was deleted)."""
        await trio.to_thread.run_sync(lambda: shutil.rmtree(self.path, ignore_errors=True))

    async def apply(self, bundle: Path, *, head: str, base: str | None) -> None:
        """Check ``bundle`` against the history and add it: ``head`` (its one ref, checked
        against the header by the caller) becomes the history's head; ``base``, the head
        it continues (None: a full bundle into an empty mirror), must be its ancestor. When
        this raises, the mirror may hold the bundle's objects anyway (all of them connected:
        ``index-pack --strict`` keeps nothing else); the ref is where it was.

        Two git commands: ``index-pack --strict --fix-thin`` on the bundle's pack (every
        object checked, every object it links to present, in the pack or the history,
        so the new commits' parents - the prerequisites - are there), then ``merge-base
        --is-ancestor`` (``head`` is a commit that continues ``base``). The ref is written
        by the agent. (``git fetch`` of the bundle runs three: fetch, index-pack and a
        connectivity ``rev-list``.)

        Raises:
            SnapshotError: ``invalid_bundle`` when git refuses it (prerequisites missing,
                a corrupt or malicious pack, a head that is no commit), ``diverged`` when
                it does not continue ``base``, ``failed`` when git could not run.
        """
        offset = await trio.to_thread.run_sync(_pack_offset, bundle)
        with bundle.open("rb") as pack:
            pack.seek(offset)
            code, _, err = await self._run(
                "index-pack", "--strict", "--fix-thin", "--stdin", check=False, stdin=pack
            )
        if code != 0:
            raise SnapshotError("invalid_bundle", f"git refused the bundle: {err[-300:]}")
        code, _, err = await self._run(
            "merge-base", "--is-ancestor", base or head, head, check=False
        )
        if code == 1:
            raise SnapshotError("diverged", "the bundle does not continue the stored history")
        if code != 0:
            raise SnapshotError("invalid_bundle", f"the bundle's head is unusable: {err[-300:]}")
        await trio.to_thread.run_sync(_write_ref, self.path / SNAPSHOT_REF, head)

    async def write_full(self, dest: Path) -> None:
        """Write a bundle of the whole history to ``dest``."""
        await self._run("bundle", "create", "-q", str(dest), SNAPSHOT_REF)

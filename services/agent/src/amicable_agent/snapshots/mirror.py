"""The agent's own copy of a project's history: a bare repository per project, where every
bundle a sandbox hands over is checked before it is stored.

A bundle from a sandbox is untrusted. Before it is stored, :meth:`Mirror.apply` fetches it
(one git command: its prerequisites must be commits the stored history already has, as
``git bundle verify`` checks; ``index-pack`` checks the pack and its checksum; the
connectivity check that the new head's objects are all there), fast-forward only. The mirror then holds exactly the stored
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
from typing import TYPE_CHECKING

import trio

from amicable_agent.errors import SnapshotError

from .bundle import SNAPSHOT_REF

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
    "GIT_CONFIG_KEY_4": "maintenance.auto",  # a fetch would start `git maintenance run`
    "GIT_CONFIG_VALUE_4": "false",
}


async def _kill_group(process: trio.Process) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


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

    async def _run(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        argv = [self._git, f"--git-dir={self.path}", *args]
        try:
            with trio.fail_after(self._timeout_s):
                proc = await trio.run_process(
                    argv,
                    stdin=b"",
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

    async def apply(self, bundle: Path, *, ref: str) -> None:
        """Verify ``bundle`` against the history and add it: its ``ref`` (checked against
        the header by the caller) becomes the history's head, fast-forward only. When this
        raises, the mirror may hold the bundle anyway: the caller treats it as unknown.

        Raises:
            SnapshotError: ``invalid_bundle`` when git refuses it (prerequisites missing,
                a corrupt or malicious pack), ``diverged`` when it is not a fast-forward,
                ``failed`` when git could not run.
        """
        refspec = f"{ref}:{SNAPSHOT_REF}"  # no "+": only a fast-forward
        # One git command: fetching a bundle runs the same prerequisite check as ``git
        # bundle verify`` (it unbundles), then index-pack and the connectivity check.
        code, _, err = await self._run(
            "fetch", "-q", "--no-tags", "--no-write-fetch-head", str(bundle), refspec,
            check=False,
        )  # fmt: skip
        if code != 0 and ("prerequisite" in err or "Repository lacks" in err):
            raise SnapshotError("invalid_bundle", f"git refused the bundle: {err[-300:]}")
        if code != 0 and "non-fast-forward" in err:
            raise SnapshotError("diverged", "the bundle does not continue the stored history")
        if code != 0:
            raise SnapshotError("invalid_bundle", f"git fetch refused the bundle: {err[-300:]}")

    async def write_full(self, dest: Path) -> None:
        """Write a bundle of the whole history to ``dest``."""
        await self._run("bundle", "create", "-q", str(dest), SNAPSHOT_REF)

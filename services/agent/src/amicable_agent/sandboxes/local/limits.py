"""Per-sandbox limits: memory, process count and CPU share through cgroups, resource limits
otherwise.

The backend attaches a sandbox's first process (bubblewrap's, while it still waits) to a
cgroup of its own before anything runs in it, so every process of the sandbox is counted.

* **cgroup v2** (one unified hierarchy): ``<our cgroup>/amicable-<agent pid>/<sandbox>`` with
  ``memory.max``, ``pids.max`` and ``cpu.weight``. This needs our cgroup to be delegated to
  us (writable); if the agent's process sits in it, it first moves into a leaf
  ``<our cgroup>/agent`` (cgroup v2 allows processes only in leaves once controllers are
  enabled below).
* **cgroup v1** (a hybrid machine): the same directory in each writable hierarchy:
  ``memory.limit_in_bytes``, ``pids.max``, ``cpu.shares``.
* **otherwise**, per controller that is not available: ``RLIMIT_NPROC`` (it counts every
  task of the user, so: the user's tasks at the start plus ``pids_max``; not enforced for
  root), ``RLIMIT_DATA`` per process, and ``nice`` 10, with a logged note.

Always: ``RLIMIT_FSIZE`` (no single file above the disk quota) and no core dumps. The disk
quota itself is watched by :mod:`.watchdog`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)

GIB = 1024**3
CONTROLLERS = ("memory", "pids", "cpu")
_NICE = 10


@attrs.frozen
class SandboxLimits:
    """What one sandbox may use.

    Attributes:
        memory_bytes: memory of all its processes, its ``/tmp`` included.
        pids_max: processes and threads.
        cpu_weight: CPU share under contention, cgroup v2 scale (100 = an ordinary group;
            cgroup v1 ``cpu.shares`` = weight * 1024 / 100).
        disk_bytes: its directory (workspace, home, logs); also the largest single file.
    """

    memory_bytes: int = 2 * GIB
    pids_max: int = 1024
    cpu_weight: int = 50
    disk_bytes: int = 4 * GIB

    @property
    def tmp_bytes(self) -> int:
        """Size of the sandbox's ``/tmp`` (memory-backed, so counted as its memory)."""
        return min(512 * 1024**2, self.memory_bytes // 4)


@attrs.frozen
class Hierarchy:
    """Where sandbox cgroups are made for some controllers."""

    version: int
    parent: Path
    controllers: tuple[str, ...]


def parse_hierarchies(proc_cgroup: str, mountinfo: str) -> list[tuple[int, Path, tuple[str, ...]]]:
    """``(version, our cgroup directory, controllers)`` for each mounted hierarchy that has
    one of :data:`CONTROLLERS` (v2 only when it is the unified, not a hybrid's empty one).

    Args:
        proc_cgroup: the text of ``/proc/self/cgroup``.
        mountinfo: the text of ``/proc/self/mountinfo``.
    """
    ours: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            ours[parts[1]] = parts[2]
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, mount, options = tail[0], fields[4], tail[2].split(",")
        if fstype == "cgroup":
            controllers = tuple(c for c in CONTROLLERS if c in options)
            key = next((k for k in ours if k and set(k.split(",")) & set(controllers)), None)
            if controllers and key is not None:
                found.append((1, Path(mount) / ours[key].lstrip("/"), controllers))
        elif fstype == "cgroup2" and "" in ours:
            found.append((2, Path(mount) / ours[""].lstrip("/"), CONTROLLERS))
    return found


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


class Cgroups:
    """The hierarchies usable here (found once per backend). Create with :meth:`detect`."""

    def __init__(self, hierarchies: list[Hierarchy], missing: tuple[str, ...]) -> None:
        self.hierarchies = hierarchies
        self.missing = missing

    @classmethod
    def detect(cls, proc: Path = Path("/proc/self")) -> Cgroups:
        """Find writable hierarchies for memory, pids and cpu (blocking)."""
        try:
            proc_cgroup = (proc / "cgroup").read_text()
            mountinfo = (proc / "mountinfo").read_text()
        except OSError:
            return cls([], CONTROLLERS)
        found: list[Hierarchy] = []
        covered: set[str] = set()
        for version, ours, controllers in parse_hierarchies(proc_cgroup, mountinfo):
            wanted = tuple(c for c in controllers if c not in covered)
            if not wanted:
                continue
            if version == 2:
                wanted = _delegate_v2(ours, wanted)
                if not wanted:
                    continue
            parent = ours / f"amicable-{os.getpid()}"
            try:
                parent.mkdir(exist_ok=True)
                if version == 2:
                    _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
            except OSError:
                continue
            found.append(Hierarchy(version, parent, wanted))
            covered.update(wanted)
        missing = tuple(c for c in CONTROLLERS if c not in covered)
        return cls(found, missing)

    def describe(self) -> str:
        """One line for the log: which limits are enforced how."""
        parts = [f"cgroup v{h.version}: {', '.join(h.controllers)}" for h in self.hierarchies]
        if self.missing:
            parts.append(f"rlimit/nice fallback: {', '.join(self.missing)}")
        return "; ".join(parts)

    def create(self, name: str, limits: SandboxLimits) -> SandboxCgroup:
        """A cgroup per hierarchy for sandbox ``name`` with ``limits`` written (blocking).

        A hierarchy where this fails is left out (its controllers fall back to rlimits).
        """
        dirs: list[Path] = []
        missing = list(self.missing)
        for hierarchy in self.hierarchies:
            path = hierarchy.parent / name
            try:
                with contextlib.suppress(FileExistsError):
                    path.mkdir()
                for controller in hierarchy.controllers:
                    for file, value in _settings(hierarchy.version, controller, limits):
                        _write(path / file, value)
            except OSError as exc:
                log.warning("sandbox %s: cgroup %s unusable (%s)", name, path, exc)
                missing.extend(hierarchy.controllers)
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            dirs.append(path)
        return SandboxCgroup(dirs, tuple(missing))

    def remove_parents(self) -> None:
        """Remove our per-agent directories (once every sandbox has stopped)."""
        for hierarchy in self.hierarchies:
            with contextlib.suppress(OSError):
                hierarchy.parent.rmdir()


def _delegate_v2(ours: Path, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """Enable ``wanted`` for our cgroup's children; the controllers that could be."""
    try:
        available = (ours / "cgroup.controllers").read_text().split()
        enabled = (ours / "cgroup.subtree_control").read_text().split()
    except OSError:
        return ()
    wanted = tuple(c for c in wanted if c in available)
    todo = [c for c in wanted if c not in enabled]
    if not todo:
        return wanted
    try:
        _write(ours / "cgroup.subtree_control", " ".join(f"+{c}" for c in todo))
    except OSError:
        # processes (ours) in this cgroup: move into a leaf first, as container managers do
        try:
            (ours / "agent").mkdir(exist_ok=True)
            _write(ours / "agent" / "cgroup.procs", str(os.getpid()))
            _write(ours / "cgroup.subtree_control", " ".join(f"+{c}" for c in todo))
        except OSError:
            return ()
    return wanted


def _settings(version: int, controller: str, limits: SandboxLimits) -> list[tuple[str, str]]:
    if controller == "memory":
        name = "memory.max" if version == 2 else "memory.limit_in_bytes"
        return [(name, str(limits.memory_bytes))]
    if controller == "pids":
        return [("pids.max", str(limits.pids_max))]
    if version == 2:
        return [("cpu.weight", str(max(1, min(10000, limits.cpu_weight))))]
    return [("cpu.shares", str(max(2, limits.cpu_weight * 1024 // 100)))]


@attrs.define
class SandboxCgroup:
    """One sandbox's cgroup directories and the controllers left to rlimits."""

    dirs: list[Path]
    missing: tuple[str, ...]

    def attach(self, pid: int, limits: SandboxLimits) -> None:
        """Put ``pid`` (and so everything it starts) under the limits (blocking).

        Raises:
            OSError: the process is gone or a cgroup refused it.
        """
        for path in self.dirs:
            _write(path / "cgroup.procs", str(pid))
        apply_rlimits(pid, limits, self.missing)

    def memory_bytes(self) -> int | None:
        """Current memory use, when a memory cgroup counts it."""
        for path in self.dirs:
            for name in ("memory.current", "memory.usage_in_bytes"):
                with contextlib.suppress(OSError, ValueError):
                    return int((path / name).read_text())
        return None

    def remove(self) -> None:
        """Remove the directories (blocking; the sandbox's processes must be gone)."""
        for path in self.dirs:
            with contextlib.suppress(OSError):
                path.rmdir()


def apply_rlimits(pid: int, limits: SandboxLimits, missing: Iterable[str]) -> None:
    """Resource limits of ``pid`` (inherited by its children): always a file-size limit
    and no core dumps; for controllers in ``missing`` the rlimit/nice fallback."""
    wanted = [(resource.RLIMIT_FSIZE, limits.disk_bytes), (resource.RLIMIT_CORE, 0)]
    missing = set(missing)
    if "pids" in missing:
        # counts every task of the user (the agent's, the desktop's …), not the sandbox's
        wanted.append((resource.RLIMIT_NPROC, _user_tasks() + limits.pids_max))
    if "memory" in missing:
        wanted.append((resource.RLIMIT_DATA, limits.memory_bytes))
    for kind, value in wanted:
        resource.prlimit(pid, kind, (value, value))
    if "cpu" in missing:
        os.setpriority(os.PRIO_PROCESS, pid, _NICE)


def _user_tasks() -> int:
    """Tasks (threads) of this user now: what RLIMIT_NPROC counts."""
    uid, count = os.getuid(), 0
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count

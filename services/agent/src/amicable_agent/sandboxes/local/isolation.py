"""What an isolated local sandbox sees: bubblewrap's argv, the filesystem view, the probe.

A sandbox runs in new user, PID, IPC, UTS, cgroup and network namespaces (bubblewrap). Its
filesystem is a fresh tmpfs root holding only:

* read-only: ``/usr`` (and the ``/bin``, ``/lib*``, ``/sbin`` links or directories of the
  host), a short list of ``/etc`` files needed to run programs and reach the network (no
  ``shadow``, no credentials; ``passwd``, ``group``, ``hosts``, ``resolv.conf`` and a
  credential-free ``npmrc`` are generated), the runtime's Python (its virtualenv, the
  interpreter it was made from, and the source directories of the runtime's own packages
  when they are installed in editable mode), and ``node``'s installation when it lives
  outside ``/usr``;
* read-write: the project's workspace at ``/app``, a private home at ``/home/sandbox`` and
  ``/run/amicable`` (ready file, dev-server log), all three in the sandbox's own directory;
* private: ``/tmp`` (a size-limited tmpfs), ``/dev`` (null, zero, random, tty, pts, shm),
  ``/proc`` of its own PID namespace.

Nothing else: not the agent's data directory (store, cache, other workspaces), not the
user's home, not the source checkout. The sandbox runs as uid 0 *of its own user namespace*
(the agent's user outside) with no capabilities: its first step, a shell script of ours,
keeps ``CAP_NET_ADMIN`` just long enough to install the ``prohibit`` routes of
:mod:`.network`, then ``setpriv`` drops every capability and empties the bounding set
before the runtime is executed (bubblewrap also sets ``no_new_privs``).
"""

from __future__ import annotations

import compileall
import importlib.metadata
import json
import logging
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
import trio

from .environment import SANDBOX_PATH, looks_secret
from .network import route_script, sandbox_resolv_conf

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

IsolationMode = Literal["auto", "bwrap", "none"]
#: Paths inside an isolated sandbox.
WORKSPACE = "/app"
HOME = "/home/sandbox"
RUN_DIR = "/run/amicable"
#: Host ``/etc`` entries bound read-only when present (what libc, TLS, git and node use).
ETC_ENTRIES = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "debian_version", "gai.conf",
    "gitconfig", "host.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
    "mime.types", "nsswitch.conf", "os-release", "protocols", "services", "ssl/certs",
    "ssl/openssl.cnf", "timezone",
)  # fmt: skip
#: Top-level host entries that are links into ``/usr`` or directories needed to run binaries.
ROOT_ENTRIES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: The runtime's distribution: it and its editable (workspace) dependencies are bound.
RUNTIME_DISTRIBUTION = "amicable-sandbox-runtime"


def _editable(dist: importlib.metadata.Distribution) -> bool:
    raw = dist.read_text("direct_url.json")
    try:
        return bool(raw and json.loads(raw).get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def runtime_packages(root: str = RUNTIME_DISTRIBUTION) -> tuple[str, ...]:
    """Import names of ``root`` and of every editable install it depends on (directly or
    not): the packages whose source directories an isolated runtime needs, read from the
    installed metadata so a new workspace member is never forgotten. Empty when ``root`` is
    not installed."""
    seen: dict[str, None] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        module = name.replace("-", "_").lower()
        if module in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if not _editable(dist):
            continue
        seen[module] = None
        for requirement in dist.requires or ():
            if ";" in requirement and "extra ==" in requirement:
                continue  # an optional extra, not installed for the runtime
            if match := _REQUIREMENT_NAME.match(requirement):
                todo.append(match.group(0))
    return tuple(seen)


_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Set on bubblewrap's and pasta's own processes (not inside the sandbox):
#: ``<sandboxes dir>:<agent pid>``, so an agent that starts after a crash finds what the
#: dead one left running (see :func:`.procs.kill_orphans`).
OWNER_ENV = "AMICABLE_SANDBOX_OWNER"


@attrs.frozen
class IsolationTools:
    """Host programs an isolated sandbox needs (absolute paths)."""

    bwrap: str
    pasta: str
    ip: str
    setpriv: str
    sh: str


def find_tools() -> IsolationTools | str:
    """The tools, or a sentence naming what is missing."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
    found = {
        name: shutil.which(name, path=search) for name in ("bwrap", "pasta", "ip", "setpriv", "sh")
    }
    missing = [name for name, path in found.items() if not path]
    if missing:
        packages = {
            "bwrap": "bubblewrap",
            "pasta": "passt",
            "ip": "iproute2",
            "setpriv": "util-linux",
        }
        names = ", ".join(f"{m} (package {packages.get(m, m)})" for m in missing)
        return f"missing {names}"
    return IsolationTools(**{k: str(v) for k, v in found.items()})


@attrs.frozen
class SandboxFilesystem:
    """The host paths every isolated sandbox sees (see the module docstring).

    Attributes:
        ro_binds: host paths bound read-only at the same path.
        root_links: ``(target, link)`` symlinks made in the sandbox's root.
        etc_binds: ``(host path, sandbox path)`` read-only binds under ``/etc``.
        python: the interpreter of the runtime (its environment is bound read-only).
        path: ``PATH`` inside.
        dns_forward: address pasta relays DNS from (see :func:`.network.sandbox_resolv_conf`).
    """

    ro_binds: tuple[str, ...]
    root_links: tuple[tuple[str, str], ...]
    etc_binds: tuple[tuple[str, str], ...]
    python: str
    path: str
    dns_forward: str | None = None


def _python_of(runtime_command: Sequence[str]) -> str:
    """The interpreter that runs the runtime (its console script's shebang, or itself)."""
    exe = shutil.which(runtime_command[0]) or runtime_command[0]
    if Path(exe).name.startswith("python"):
        return exe
    try:
        with open(exe, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return sys.executable
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    if len(words) > 1 and Path(words[0]).name == "env":
        words = words[1:]
    if words and "python" in Path(words[0]).name:
        return shutil.which(words[0]) or words[0]
    return sys.executable


def _python_binds(python: str) -> list[Path]:
    """The interpreter's virtualenv, the installation it was made from, and the editable
    source directories of the runtime's packages."""
    binds: list[Path] = []
    packages = runtime_packages() or (RUNTIME_DISTRIBUTION.replace("-", "_"),)
    venv = Path(python).parent.parent
    cfg = venv / "pyvenv.cfg"
    if cfg.is_file():
        binds.append(venv)
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                binds.append(Path(value.strip()).parent)
        binds += _editable_sources(venv, packages)
    else:
        binds.append(Path(python).resolve().parent.parent)
    return binds


def _editable_sources(venv: Path, packages: Iterable[str]) -> list[Path]:
    """The source directories (``.pth`` entries of an editable install) holding ``packages``."""
    found = []
    for pth in venv.glob("lib/python*/site-packages/*.pth"):
        for entry in pth.read_text(errors="replace").splitlines():
            src = Path(entry.strip())
            if src.is_absolute() and any((src / p).is_dir() for p in packages):
                found.append(src)
    return found


def compile_runtime_sources(runtime_command: Sequence[str]) -> int:
    """Write the bytecode of the runtime's editable sources (a checkout); how many packages.

    The sandbox sees those sources read-only, so a runtime whose ``.pyc`` files are missing
    or stale compiles its modules again on every start: about 0.1 s of a cold start here,
    measured. Done once when the backend opens (seconds the first time, milliseconds when
    up to date), only when the runtime runs on this interpreter (the bytecode is its own).
    """
    python = _python_of(runtime_command)
    if Path(python).resolve() != Path(sys.executable).resolve():
        return 0
    packages = runtime_packages() or (RUNTIME_DISTRIBUTION.replace("-", "_"),)
    compiled = 0
    for src in _editable_sources(Path(python).parent.parent, packages):
        for package in packages:
            if (src / package).is_dir():
                # quiet=2: a read-only checkout only means the runtime compiles them itself
                compileall.compile_dir(src / package, quiet=2, workers=1)
                compiled += 1
    return compiled


def _node_binds() -> tuple[list[Path], list[str]]:
    """``node``/``npm`` installations outside ``/usr`` (e.g. nvm) and their bin dirs."""
    binds, bins = [], []
    for name in ("node", "npm"):
        found = shutil.which(name)
        if not found:
            continue
        real = Path(found).resolve()
        if not real.is_relative_to("/usr"):
            binds.append(real.parent.parent)
            bins.append(str(Path(found).parent))
    return binds, bins


def _outermost(paths: Iterable[Path]) -> tuple[str, ...]:
    """Existing paths (absolute, links kept), without those inside another one by name or
    once resolved (``/bin/sh`` is ``/usr/bin/dash``: bound with ``/usr`` already)."""
    found = sorted({Path(os.path.abspath(p)) for p in paths if p.exists()})

    def inside(path: Path, other: Path) -> bool:
        return path != other and (
            path.is_relative_to(other) or path.resolve().is_relative_to(other)
        )

    return tuple(str(p) for p in found if not any(inside(p, o) for o in found))


def _credential_free_npmrc(text: str) -> str:
    """The global npmrc without lines whose key looks like a credential."""
    keep = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if not looks_secret(key.replace("-", "_")) and "_auth" not in key:
            keep.append(line)
    return "\n".join(keep) + "\n"


def prepare_filesystem(runtime_command: Sequence[str], system_dir: Path) -> SandboxFilesystem:
    """Work out the view and write the generated ``/etc`` files into ``system_dir``
    (blocking; once per backend)."""
    system_dir.mkdir(parents=True, exist_ok=True)
    python = _python_of(runtime_command)
    node_binds, node_bins = _node_binds()
    exe = Path(shutil.which(runtime_command[0]) or runtime_command[0])
    ro = _outermost([Path("/usr"), exe, *_python_binds(python), *node_binds])
    links, dirs = [], []
    for name in ROOT_ENTRIES:
        host = Path("/") / name
        if host.is_symlink():
            links.append((os.readlink(host), f"/{name}"))
        elif host.is_dir():
            dirs.append(host)
    etc = [(f"/etc/{e}", f"/etc/{e}") for e in ETC_ENTRIES if Path("/etc", e).exists()]
    try:
        resolv_text = Path("/etc/resolv.conf").read_text(errors="replace")
    except OSError:
        resolv_text = ""
    resolv, dns_forward = sandbox_resolv_conf(resolv_text)
    generated = {
        "passwd": "root:x:0:0:sandbox:/home/sandbox:/bin/sh\n",
        "group": "root:x:0:\n",
        "hosts": "127.0.0.1 localhost amicable-sandbox\n::1 localhost ip6-localhost\n",
        "hostname": "amicable-sandbox\n",
        "resolv.conf": resolv,
    }
    if Path("/etc/npmrc").is_file():
        generated["npmrc"] = _credential_free_npmrc(Path("/etc/npmrc").read_text(errors="replace"))
    for name, content in generated.items():
        target = system_dir / name
        if not target.is_file() or target.read_text() != content:
            tmp = system_dir / f".{name}.tmp"
            tmp.write_text(content)
            tmp.replace(target)
        etc.append((str(target), f"/etc/{name}"))
    path = ":".join(dict.fromkeys([*node_bins, *SANDBOX_PATH.split(":")]))
    return SandboxFilesystem(
        ro_binds=_outermost([*map(Path, ro), *dirs]),
        root_links=tuple(links),
        etc_binds=tuple(etc),
        python=python,
        path=path,
        dns_forward=dns_forward,
    )


def setup_script(tools: IsolationTools, blocked: Iterable[str]) -> str:
    """The sandbox's first process: routes, then every capability dropped, then ``"$@"``."""
    drop = shlex.join([tools.setpriv, "--inh-caps=-all", "--ambient-caps=-all",
                       "--bounding-set=-all", "--no-new-privs", "--"])  # fmt: skip
    return "set -e\n" + route_script(tools.ip, blocked) + f'exec {drop} "$@"\n'


def bwrap_argv(
    tools: IsolationTools,
    fs: SandboxFilesystem,
    *,
    root: Path,
    command: Sequence[str],
    blocked: Iterable[str],
    info_fd: int,
    block_fd: int,
    tmp_bytes: int,
) -> list[str]:
    """bubblewrap around ``command`` for the sandbox directory ``root`` (see the module
    docstring). bubblewrap reports the sandbox's pid on ``info_fd`` and waits for a byte on
    ``block_fd`` before the sandbox runs anything (the backend attaches limits and the
    network meanwhile).

    ``--die-with-parent``: bubblewrap (and so the sandbox's PID namespace, every process
    in it) dies with the agent. It is ``PR_SET_PDEATHSIG``, which follows the *thread* that
    forked bubblewrap: the agent forks it on its one long-lived leash thread
    (:mod:`amicable_agent.leash`), never on a Trio worker that idles out. A setuid
    bubblewrap drops the leash's own setting at exec; this flag puts it back."""
    argv = [
        tools.bwrap,
        "--unshare-user", "--uid", "0", "--gid", "0",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
        "--unshare-cgroup-try", "--hostname", "amicable-sandbox",
        "--die-with-parent", "--unsetenv", OWNER_ENV,
        "--cap-drop", "ALL", "--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_SETPCAP",
        "--info-fd", str(info_fd), "--block-fd", str(block_fd),
    ]  # fmt: skip
    # The private /tmp first: a checkout (and so the runtime's virtualenv) may itself live
    # under /tmp, and its read-only binds must land on top of the tmpfs, not under it.
    argv += ["--dev", "/dev", "--proc", "/proc", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for path in fs.ro_binds:
        argv += ["--ro-bind", path, path]
    for target, link in fs.root_links:
        argv += ["--symlink", target, link]
    argv += ["--symlink", "/tmp", "/var/tmp"]
    for host, inside in fs.etc_binds:
        argv += ["--ro-bind", host, inside]
    argv += ["--bind", str(root / "workspace"), WORKSPACE]
    argv += ["--bind", str(root / "home"), HOME]
    argv += ["--bind", str(root / "run"), RUN_DIR]
    argv += ["--chdir", WORKSPACE, "--"]
    return [*argv, tools.sh, "-c", setup_script(tools, blocked), "amicable-sandbox", *command]


async def probe(tools: IsolationTools) -> str | None:
    """None when bubblewrap can make the namespaces here (run once), else why not."""
    argv = [
        tools.bwrap, "--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid",
        "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--cap-drop", "ALL", "--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_SETPCAP",
        "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--",
        tools.sh, "-c", setup_script(tools, ["169.254.169.254/32"]), "probe", tools.sh, "-c", "true",
    ]  # fmt: skip
    try:
        with trio.fail_after(30):
            done = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False, stdin=b""
            )
    except (OSError, trio.TooSlowError) as exc:
        return f"bubblewrap did not run: {exc}"
    if done.returncode != 0:
        return "bubblewrap cannot create the namespaces: " + (
            done.stderr.decode(errors="replace").strip()[-300:] or f"exit {done.returncode}"
        )
    return None

"""The pure parts of local sandbox isolation, without a sandbox: the environment allow-list,
what the network setup blocks, pasta's and bubblewrap's arguments, cgroup discovery, the
disk watchdog (on a mock clock) and the migration of hard-linked node_modules."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
import tomllib
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from amicable_agent.cli import sandbox_mode
from amicable_agent.config import AgentConfig
from amicable_agent.errors import ConfigError, SandboxProvisionError
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_agent.sandboxes.local import limits
from amicable_agent.sandboxes.local.backend import LocalBackendConfig, open_local_backend
from amicable_agent.sandboxes.local.environment import inherited_env, sandbox_env
from amicable_agent.sandboxes.local.isolation import (
    OWNER_ENV,
    IsolationTools,
    bwrap_argv,
    compile_runtime_sources,
    prepare_filesystem,
    runtime_packages,
    setup_script,
)
from amicable_agent.sandboxes.local.limits import Cgroups, SandboxLimits, parse_hierarchies
from amicable_agent.sandboxes.local.network import (
    blocked_destinations,
    local_addresses,
    pasta_argv,
    sandbox_resolv_conf,
)
from amicable_agent.sandboxes.local.procs import kill_orphans
from amicable_agent.sandboxes.local.unshare import MARKER, unshare_node_modules
from amicable_agent.sandboxes.local.watchdog import GRACE_BYTES, disk_usage, watch_disk

MIB = 1024**2
TOOLS = IsolationTools(
    "/usr/bin/bwrap", "/usr/bin/pasta", "/usr/sbin/ip", "/usr/bin/setpriv", "/bin/sh"
)


def test_the_environment_is_an_allow_list() -> None:
    agent = {
        "PATH": "/home/u/.nvm/bin:/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm",
        "NODE_OPTIONS": "--max-old-space-size=2048",
        "NODE_AUTH_TOKEN": "npm-token",
        "HASURA_GRAPHQL_ADMIN_SECRET": "x",
        "OPENAI_API_KEY": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "DATABASE_URL": "postgres://u:p@h/db",
        "HTTPS_PROXY": "http://proxy:3128",
        "MY_SERVICE_PASSWORD": "x",
        "SSH_AUTH_SOCK": "/tmp/ssh.sock",
    }
    inherited = inherited_env(agent, passthrough=("HTTPS_PROXY", "MY_SERVICE_PASSWORD"))
    assert inherited == {
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm",
        "NODE_OPTIONS": "--max-old-space-size=2048",
        "HTTPS_PROXY": "http://proxy:3128",  # passed through; a secret-looking name never is
    }
    env = sandbox_env(agent, {"AMICABLE_RUNTIME_TOKEN": "own"}, path="/usr/bin", home="/home/s")
    assert env["PATH"] == "/usr/bin"
    assert env["HOME"] == "/home/s"
    assert env["AMICABLE_RUNTIME_TOKEN"] == "own", "its own settings come last"
    assert "DATABASE_URL" not in env
    assert "SSH_AUTH_SOCK" not in env


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     |-- 172.17.0.1
        /32 host LOCAL
"""
IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd000000000000000000000000000002 04 40 00 82     eth0
"""


def test_every_host_address_and_the_metadata_endpoints_are_blocked() -> None:
    addresses = local_addresses(FIB_TRIE, IF_INET6)
    assert addresses == ["192.0.2.2", "172.17.0.1", "fd00::2"]
    assert blocked_destinations(addresses) == [
        "192.0.2.2/32", "172.17.0.1/32", "fd00::2/128",
        "169.254.169.254/32", "169.254.170.2/32", "fd00:ec2::254/128",
    ]  # fmt: skip
    assert "fd00:ec2::254/128" not in blocked_destinations(["10.0.0.5"]), "no IPv6 here"
    script = setup_script(TOOLS, ["192.0.2.2/32"])
    assert script.startswith(
        "set -e\n/usr/sbin/ip -batch - <<'EOF'\nroute add prohibit 192.0.2.2/32\nEOF\n"
    )
    assert script.endswith(
        "exec /usr/bin/setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all "
        '--no-new-privs -- "$@"\n'
    )


def test_a_loopback_resolver_is_reached_through_pasta() -> None:
    plain = "nameserver 10.255.255.53\nsearch example.org\n"
    assert sandbox_resolv_conf(plain) == (plain, None)
    resolved, forward = sandbox_resolv_conf("nameserver 127.0.0.53\noptions edns0\nsearch lan\n")
    assert forward == "169.254.0.53"
    assert resolved == "nameserver 169.254.0.53\noptions edns0\nsearch lan\n"


def test_pasta_forwards_two_loopback_ports_and_maps_nothing_of_the_host_in() -> None:
    argv = pasta_argv("/usr/bin/pasta", 4242, [(41000, 8888), (41001, 3000)])
    assert argv[-1] == "4242"
    assert "--no-map-gw" in argv
    assert argv[argv.index("--tcp-ports") + 1] == "127.0.0.1/41000:8888,41001:3000"
    for option in ("--udp-ports", "--tcp-ns", "--udp-ns"):
        assert argv[argv.index(option) + 1] == "none"
    assert ("--runas" in argv) is (os.geteuid() == 0)


def test_bubblewrap_binds_only_the_system_the_runtime_and_the_sandbox_dir(tmp_path: Path) -> None:
    runtime = str(Path(sys.executable).parent / "amicable-sandbox-runtime")
    fs = prepare_filesystem((runtime,), tmp_path / "etc")
    root = tmp_path / "sandboxes" / "amicable-0123"
    argv = bwrap_argv(TOOLS, fs, root=root, command=[runtime], blocked=[], info_fd=7,
                      block_fd=8, tmp_bytes=1024)  # fmt: skip
    pairs = [(argv[i], argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a.endswith("bind")]
    writable = [(src, dst) for kind, src, dst in pairs if kind == "--bind"]
    assert writable == [
        (str(root / "workspace"), "/app"),
        (str(root / "home"), "/home/sandbox"),
        (str(root / "run"), "/run/amicable"),
    ]
    sources = {src for _, src, _ in pairs}
    assert "/usr" in sources
    assert "/" not in sources, "never the whole host"
    assert not any(s == "/etc" or s.startswith("/etc/shadow") for s in sources)
    assert not any(s.startswith(str(Path.home() / ".ssh")) for s in sources)
    checkout = Path(__file__).resolve().parents[3]
    for src in sources:
        inside = Path(src).is_relative_to(checkout)
        assert not inside or "/.venv" in src or src.endswith("/src"), src
    assert (tmp_path / "etc" / "passwd").read_text().count("\n") == 1
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--unshare-net"):  # fmt: skip
        assert flag in argv
    # the agent forks bubblewrap on its long-lived leash thread (amicable_agent.leash), so
    # PR_SET_PDEATHSIG is safe: the sandbox dies with the agent
    assert "--die-with-parent" in argv
    assert argv[argv.index("--unsetenv") + 1] == OWNER_ENV, "the owner mark stays outside"
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--size") + 1 : argv.index("--size") + 4] == ["1024", "--tmpfs", "/tmp"]


PROC_CGROUP_V1 = "8:pids:/\n4:memory:/jobs/42\n1:cpu,cpuacct:/\n0::/\n"
MOUNTINFO = """32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
"""


def test_cgroup_hierarchies_are_found_from_proc() -> None:
    found = parse_hierarchies(PROC_CGROUP_V1, MOUNTINFO)
    assert found[:3] == [
        (1, Path("/sys/fs/cgroup/cpu,cpuacct"), ("cpu",)),
        (1, Path("/sys/fs/cgroup/memory/jobs/42"), ("memory",)),
        (1, Path("/sys/fs/cgroup/pids"), ("pids",)),
    ]
    unified = parse_hierarchies(
        "0::/user.slice/app\n", "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    assert unified == [(2, Path("/sys/fs/cgroup/user.slice/app"), ("memory", "pids", "cpu"))]


def test_cgroup_v1_limits_are_written_and_the_first_pid_attached(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    mounts = {c: tmp_path / "cg" / c for c in ("memory", "pids", "cpu")}
    for path in mounts.values():
        path.mkdir(parents=True)
    (proc / "cgroup").write_text("3:pids:/\n2:memory:/\n1:cpu:/\n")
    (proc / "mountinfo").write_text("".join(
        f"3{i} 1 0:{i} / {path} rw - cgroup cgroup rw,{name}\n"
        for i, (name, path) in enumerate(mounts.items())
    ))  # fmt: skip
    cgroups = Cgroups.detect(proc)
    assert cgroups.missing == ()
    limits = SandboxLimits(memory_bytes=1 << 30, pids_max=100, cpu_weight=50, disk_bytes=1 << 30)
    cgroup = cgroups.create("sbx", limits)
    ours = f"amicable-{os.getpid()}"
    assert (mounts["memory"] / ours / "sbx" / "memory.limit_in_bytes").read_text() == str(1 << 30)
    assert (mounts["pids"] / ours / "sbx" / "pids.max").read_text() == "100"
    assert (mounts["cpu"] / ours / "sbx" / "cpu.shares").read_text() == "512"
    cgroup.dirs = []  # plain directories here: attach would also set rlimits on the pid
    assert "cgroup v1: memory" in cgroups.describe()


def test_cgroup_v2_delegates_by_moving_the_agent_into_a_leaf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a unified hierarchy (cgroup v2) as the kernel presents it to a process whose cgroup
    # holds processes: enabling controllers for children is refused (EBUSY) until the
    # agent has moved into a leaf of its own; the io controller is not wanted, memory is
    # not delegated to us (so it falls back to rlimits)
    proc, mount = tmp_path / "proc", tmp_path / "cgroup2"
    ours = mount / "user.slice" / "app"
    proc.mkdir()
    ours.mkdir(parents=True)
    (proc / "cgroup").write_text("0::/user.slice/app\n")
    (proc / "mountinfo").write_text(f"41 31 0:38 / {mount} rw - cgroup2 cgroup2 rw\n")
    (ours / "cgroup.controllers").write_text("cpuset cpu io pids\n")
    (ours / "cgroup.subtree_control").write_text("")
    real_write = limits._write

    def kernel_write(path: Path, value: str) -> None:
        moved = (ours / "agent" / "cgroup.procs").exists()
        if path == ours / "cgroup.subtree_control" and not moved:
            raise OSError(errno.EBUSY, "Device or resource busy")
        real_write(path, value)

    monkeypatch.setattr(limits, "_write", kernel_write)
    cgroups = Cgroups.detect(proc)
    assert (ours / "agent" / "cgroup.procs").read_text() == str(os.getpid())
    assert (ours / "cgroup.subtree_control").read_text() == "+pids +cpu"
    parent = ours / f"amicable-{os.getpid()}"
    assert (parent / "cgroup.subtree_control").read_text() == "+pids +cpu"
    assert cgroups.missing == ("memory",)
    assert cgroups.describe() == "cgroup v2: pids, cpu; rlimit/nice fallback: memory"
    sandbox_limits = SandboxLimits(
        memory_bytes=1 << 30, pids_max=64, cpu_weight=50, disk_bytes=1 << 30
    )
    cgroup = cgroups.create("sbx", sandbox_limits)
    assert (parent / "sbx" / "pids.max").read_text() == "64"
    assert (parent / "sbx" / "cpu.weight").read_text() == "50"
    assert not (parent / "sbx" / "memory.max").exists()
    assert cgroup.missing == ("memory",)


def test_cgroup_v2_without_delegation_falls_back_to_rlimits(tmp_path: Path) -> None:
    proc, mount = tmp_path / "proc", tmp_path / "cgroup2"
    proc.mkdir()
    mount.mkdir()
    (proc / "cgroup").write_text("0::/\n")
    (proc / "mountinfo").write_text(f"41 31 0:38 / {mount} rw - cgroup2 cgroup2 rw\n")
    # no cgroup.controllers readable: not ours to manage
    cgroups = Cgroups.detect(proc)
    assert cgroups.hierarchies == []
    assert cgroups.missing == ("memory", "pids", "cpu")


class Disk:
    """A directory's size and its filesystem's free space, changed by the test."""

    def __init__(self, usage: int) -> None:
        self.usage = usage
        self.free = 100 * 1024**3
        self.walks = 0

    async def measure(self) -> int:
        await trio.lowlevel.checkpoint()
        self.walks += 1
        return self.usage

    async def write(self, total: int, per_second: int) -> None:
        while total > 0:
            await trio.sleep(1)
            self.usage += per_second
            self.free -= per_second
            total -= per_second


async def test_the_disk_watchdog_stops_at_the_quota(autojump_clock: trio.testing.MockClock) -> None:
    disk = Disk(100 * MIB)
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(disk.write, 10 * 1024**3, 200 * MIB)
        over = await watch_disk(1024**3, disk.measure, lambda: disk.free, seen.append)
        nursery.cancel_scope.cancel()
    assert 1024**3 < over <= 1024**3 + 200 * MIB
    assert seen[-1] == over
    assert disk.walks <= 6, "a walk per 200 MiB written, not one per poll"


async def test_the_first_walk_waits_for_the_start_to_be_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = Disk(100 * MIB)
    with trio.move_on_after(5):
        await watch_disk(1024**3, disk.measure, lambda: disk.free, lambda _: None)
    assert disk.walks == 0, "nothing written: no walk while the dev server starts"
    with trio.move_on_after(11):
        await watch_disk(1024**3, disk.measure, lambda: disk.free, lambda _: None)
    assert disk.walks == 1


async def test_a_project_over_its_quota_may_start_but_not_grow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = Disk(2 * 1024**3)
    quota = partial(watch_disk, 1024**3, disk.measure, lambda: disk.free, lambda _: None)
    with trio.move_on_after(600) as idle:
        await quota()
    assert idle.cancelled_caught, "over its quota from the start: it may run to be cleaned up"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(disk.write, 1024**3, 100 * MIB)
        over = await quota()
        nursery.cancel_scope.cancel()
    assert 2 * 1024**3 + GRACE_BYTES < over <= 2 * 1024**3 + GRACE_BYTES + 100 * MIB


def test_disk_usage_counts_each_inode_once_and_follows_no_link(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "c").symlink_to("/usr")
    single = disk_usage(tmp_path)
    assert 100_000 <= single < 200_000


def test_hard_linked_node_modules_get_their_own_copies(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "vite" / "package.json"
    cache.parent.mkdir(parents=True)
    cache.write_text('{"name": "vite"}')
    roots = []
    for name in ("a", "b"):
        root = tmp_path / name
        target = root / "workspace" / "node_modules" / "vite"
        target.mkdir(parents=True)
        os.link(cache, target / "package.json")
        (target / "link").symlink_to(cache)
        roots.append(root)
    assert unshare_node_modules(roots[0] / "workspace", roots[0]) == 1
    with (roots[0] / "workspace" / "node_modules" / "vite" / "package.json").open("a") as fh:
        fh.write("changed")
    assert cache.read_text() == '{"name": "vite"}'
    assert (roots[1] / "workspace/node_modules/vite/package.json").read_text() == cache.read_text()
    assert (roots[0] / MARKER).exists()
    assert unshare_node_modules(roots[0] / "workspace", roots[0]) == 0, "marked: not walked again"


@pytest.mark.parametrize(
    ("isolation", "shown"), [("auto", "isolated"), ("bwrap", "isolated"), ("none", "NOT isolated")]
)
def test_amicable_up_says_how_sandboxes_run(isolation: str, shown: str) -> None:
    assert sandbox_mode(AgentConfig(local_isolation=isolation)).startswith(shown)  # type: ignore[arg-type]


async def test_an_agent_kills_what_a_crashed_one_left_running(tmp_path: Path) -> None:
    dead_agent = 4_194_305  # above the kernel's largest pid: no such process
    sandboxes = tmp_path / "sandboxes"
    procs = {}
    for who, agent in (("orphan", dead_agent), ("alive", os.getpid()), ("other", dead_agent)):
        root = sandboxes if who != "other" else tmp_path / "elsewhere"
        procs[who] = await trio.lowlevel.open_process(
            ["sleep", "300"], env={OWNER_ENV: f"{root}:{agent}"}, start_new_session=True
        )
    try:
        assert kill_orphans(OWNER_ENV, sandboxes) == 1
        with trio.fail_after(10):
            await procs["orphan"].wait()
        assert procs["alive"].returncode is None, "a live agent's sandboxes stay"
        assert procs["other"].returncode is None, "another data directory's stay"
    finally:
        for proc in procs.values():
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
async def test_a_runtime_that_exits_at_once_is_a_provision_error(
    tmp_path: Path, isolation: str
) -> None:
    """The reason reaches the user as a SandboxProvisionError, not an exception group."""
    config = LocalBackendConfig(
        data_dir=tmp_path, runtime_command=("/bin/sh", "-c", "echo no runtime here; exit 3", "x"),
        warm_pool_size=0, spare_workspaces=0, isolation=isolation,  # type: ignore[arg-type]
    )  # fmt: skip
    workspace = tmp_path / "sandboxes" / sandbox_id_for("s") / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "package.json").write_text("{}")
    async with open_local_backend(config) as backend:
        with pytest.raises(SandboxProvisionError) as failed:
            await backend.ensure("s", project_id="s", template_id="vite")
    assert "no runtime here" in failed.value.reason


async def test_auto_refuses_where_it_cannot_isolate_and_none_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from amicable_agent.sandboxes.local import runner

    monkeypatch.setattr(runner, "find_tools", lambda: "missing pasta (package passt)")
    for mode in ("auto", "bwrap"):
        with pytest.raises(ConfigError) as refused:
            await runner.prepare_isolation(mode, ("x",), tmp_path)  # type: ignore[arg-type]
        assert "missing pasta (package passt)" in str(refused.value)
        assert "AMICABLE_LOCAL_ISOLATION=none" in str(refused.value)
    assert await runner.prepare_isolation("none", ("x",), tmp_path) is None
    assert "AMICABLE_LOCAL_ISOLATION=none" in caplog.text


def test_the_runtime_packages_bound_are_those_the_runtime_depends_on() -> None:
    """Read from the installed metadata: the runtime and every workspace member it needs,
    directly or not; nothing else of the workspace (the agent's code stays out)."""
    root = Path(__file__).resolve().parents[3]
    declared = tomllib.loads((root / "services/sandbox_runtime/pyproject.toml").read_text())
    members = {
        dep.replace("-", "_")
        for dep in declared["project"]["dependencies"]
        if dep.startswith("amicable-")
    }
    found = set(runtime_packages())
    assert found == {"amicable_sandbox_runtime", *members}
    assert "amicable_agent" not in found
    assert runtime_packages("no-such-distribution") == ()


async def test_a_bubblewrap_set_up_failure_is_tried_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """bubblewrap's own set-up can fail transiently (seen under load: its loopback's netlink
    request answered ECHILD); nothing ran yet, so the start is tried again once."""
    real = shutil.which("bwrap")
    assert real is not None
    tools = tmp_path / "tools"
    tools.mkdir()
    starts = tmp_path / "starts"
    (tools / "bwrap").write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --info-fd "*) echo start >> ' + str(starts) + " ;; esac\n"
        "if [ -f " + str(starts) + " ] && [ $(wc -l < " + str(starts) + ") = 1 ]; then\n"
        "  echo 'bwrap: loopback: Failed RTM_NEWADDR: No child processes' >&2; exit 1\n"
        "fi\n"
        f'exec {real} "$@"\n'
    )
    (tools / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    config = LocalBackendConfig(
        data_dir=tmp_path, runtime_command=("/bin/sh", "-c", "echo second start ran; exit 3", "x"),
        warm_pool_size=0, spare_workspaces=0, isolation="bwrap",
    )  # fmt: skip
    workspace = tmp_path / "sandboxes" / sandbox_id_for("s") / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "package.json").write_text("{}")
    caplog.set_level(logging.WARNING, logger="amicable_agent.sandboxes.local.runner")
    async with open_local_backend(config) as backend:
        with pytest.raises(SandboxProvisionError) as failed:
            await backend.ensure("s", project_id="s", template_id="vite")
    assert starts.read_text().count("start") == 2
    assert "second start ran" in failed.value.reason
    assert any("starting it again" in r.getMessage() for r in caplog.records)


def test_the_runtimes_bytecode_is_written_before_sandboxes_run_it_read_only(
    tmp_path: Path,
) -> None:
    # Inside bubblewrap the runtime's sources are read-only: without fresh .pyc files it
    # would compile its modules on every start (~0.1 s of a cold start, measured).
    import importlib.util

    import amicable_sandbox_runtime.spawn as spawn

    source = Path(spawn.__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.unlink(missing_ok=True)
    assert compile_runtime_sources(("amicable-sandbox-runtime",)) >= 1
    assert cached.is_file()
    # another interpreter's runtime: its bytecode would not be ours to write
    other = tmp_path / "python3.99"
    other.write_text("")
    assert compile_runtime_sources((str(other), "-m", "amicable_sandbox_runtime")) == 0

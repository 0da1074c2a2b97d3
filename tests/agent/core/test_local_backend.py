"""LocalBackend against the real ``amicable-sandbox-runtime`` and a real Vite dev server,
plus the HTTP runtime client against that runtime."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from amicable_agent.errors import RuntimeClientError
from amicable_agent.sandboxes.local.backend import open_local_backend
from amicable_agent.sandboxes.runtime_client import open_runtime_client
from amicable_protocol.runtime import ExecExit, ExecOutput

from .conftest import alive, backend_config, processes_left_under

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


async def test_create_preview_runtime_api_and_resume_after_restart(tmp_path: Path) -> None:
    stages: list[str] = []

    async def on_stage(stage: str, message: str) -> None:
        stages.append(stage)

    async with open_local_backend(backend_config(tmp_path)) as backend:
        handle = await backend.ensure(
            "s-1", project_id="s-1", template_id="vite", on_stage=on_stage
        )
        assert stages == ["creating", "starting_runtime", "starting_preview"]
        assert handle.existed is False
        assert (await backend.lookup(handle.sandbox_id)) == attrs.evolve(handle, existed=True)
        async with httpx.AsyncClient(trust_env=False) as client:
            page = await client.get(handle.preview_upstream + "/")
        assert page.status_code == 200
        assert "/@vite/client" in page.text

        async with open_runtime_client(handle.runtime_url, handle.runtime_token) as rt:
            written = await rt.write_file("/notes/keep.txt", b"kept")
            data, sha = await rt.read_file("/notes/keep.txt")
            assert (data, sha) == (b"kept", written.sha256)
            with pytest.raises(RuntimeClientError) as conflict:
                await rt.write_file("/notes/keep.txt", b"x", if_match="0" * 64)
            assert (conflict.value.status, conflict.value.code) == (409, "conflict")
            with pytest.raises(RuntimeClientError) as missing:
                await rt.read_file("/nope.txt")
            assert missing.value.code == "not_found"
            result = await rt.exec("echo hi; echo err >&2; exit 3")
            assert (result.exit_code, result.stdout.strip(), result.stderr.strip()) == (
                3,
                "hi",
                "err",
            )
            items = []
            async with rt.open_exec_stream("echo one; echo two") as stream:
                async for item in stream:
                    items.append(item)
            out = "".join(i.data for i in items if isinstance(i, ExecOutput))
            assert out.split() == ["one", "two"]
            assert isinstance(items[-1], ExecExit)
            assert items[-1].exit_code == 0
            status = await rt.preview_status()
            assert status.ready
            edit = await rt.edit("/notes/keep.txt", "kept", "kept!")
            assert edit.replacements == 1
            with pytest.raises(RuntimeClientError) as no_match:
                await rt.edit("/notes/keep.txt", "absent", "x")
            assert no_match.value.status == 409
            await rt.mkdir("/notes/sub")
            await rt.move("/notes/keep.txt", "/notes/sub/kept.txt")
            tree = await rt.tree("/notes")
            assert {e.path.lstrip("/") for e in tree.entries} >= {"notes/sub", "notes/sub/kept.txt"}
            assert "notes/sub/kept.txt" in {
                p.lstrip("/") for p in (await rt.glob("**/*.txt")).paths
            }
            grep = await rt.grep("kept!", "/notes", fixed_strings=True)
            assert [m.path.lstrip("/") for m in grep.matches] == ["notes/sub/kept.txt"]
            await rt.move("/notes/sub/kept.txt", "/notes/keep.txt")
            await rt.delete("/notes/sub", recursive=True)
            assert isinstance((await rt.preview_logs(tail=5)).lines, tuple)
            with pytest.raises(RuntimeClientError) as escape:
                await rt.read_file("/../../etc/passwd")
            assert escape.value.status in (400, 404)
        async with open_runtime_client(handle.runtime_url, "wrong") as bad:
            with pytest.raises(RuntimeClientError) as unauthorized:
                await bad.read_file("/package.json")
            assert unauthorized.value.status == 401
        pids = backend.process_ids(handle.sandbox_id)

    assert len(pids) == 2
    for pid in pids:
        assert not alive(pid), f"process {pid} survived the backend"

    async with open_local_backend(backend_config(tmp_path)) as backend:
        stages.clear()
        again = await backend.ensure("s-1", project_id="s-1", template_id="vite", on_stage=on_stage)
        assert again.existed is True
        assert "creating" not in stages
        async with open_runtime_client(again.runtime_url, again.runtime_token) as rt:
            assert (await rt.read_file("/notes/keep.txt"))[0] == b"kept!"
        await backend.delete(again.sandbox_id)
        assert await backend.lookup(again.sandbox_id) is None
        assert not (tmp_path / "sandboxes" / again.sandbox_id).exists()


async def test_exec_stream_closed_early_kills_the_command(tmp_path: Path) -> None:
    async with open_local_backend(backend_config(tmp_path)) as backend:
        handle = await backend.ensure("s-2", project_id="s-2", template_id="vite")
        async with open_runtime_client(handle.runtime_url, handle.runtime_token) as rt:
            async with rt.open_exec_stream(
                "echo $$ > sleeper.pid; echo started; sleep 300"
            ) as stream:
                async for item in stream:
                    if isinstance(item, ExecOutput) and "started" in item.data:
                        break
            # the pid in the sandbox's own PID namespace: ask from inside
            pid = int((await rt.read_file("/sleeper.pid"))[0])
            with trio.fail_after(10):
                # Another process's death: nothing to wait on but polling.
                while (await rt.exec(f"kill -0 {pid} 2>/dev/null")).exit_code == 0:
                    await trio.sleep(0.05)


async def test_warm_pool_is_adopted_and_refilled(tmp_path: Path) -> None:
    stages: list[str] = []

    async def on_stage(stage: str, message: str) -> None:
        stages.append(stage)

    async with open_local_backend(backend_config(tmp_path, warm_pool_size=1)) as backend:
        with trio.fail_after(300):
            await backend.wait_pool_filled()
        handle = await backend.ensure(
            "warm-1", project_id="warm-1", template_id="vite", on_stage=on_stage
        )
        assert "creating" not in stages, "a warm sandbox needs no workspace creation"
        assert "starting_runtime" not in stages
        assert handle.existed is False
        async with httpx.AsyncClient(trust_env=False) as client:
            page = await client.get(handle.preview_upstream + "/")
        assert page.status_code == 200
        async with open_runtime_client(handle.runtime_url, handle.runtime_token) as rt:
            await rt.write_file("/kept.txt", b"warm")
        with trio.fail_after(300):
            await backend.wait_pool_filled()
        counts = {k: backend.statistics()[k] for k in ("running", "warm", "spare")}
        assert counts == {"running": 1, "warm": 1, "spare": 0}
    link = tmp_path / "sandboxes" / handle.sandbox_id
    assert link.is_symlink()
    assert (link / "workspace" / "kept.txt").read_text() == "warm"

    async with open_local_backend(backend_config(tmp_path)) as backend:
        again = await backend.ensure("warm-1", project_id="warm-1", template_id="vite")
        assert again.existed is True
        async with open_runtime_client(again.runtime_url, again.runtime_token) as rt:
            assert (await rt.read_file("/kept.txt"))[0] == b"warm"
    leftover_pools = [
        p.name for p in (tmp_path / "sandboxes").iterdir() if p.name.startswith("pool-")
    ]
    # the adopted pool dir stays (linked); the refilled, never adopted one of the first
    # backend is removed when the next backend starts
    assert leftover_pools == [os.readlink(link)]


@pytest.mark.parametrize("spares", [0, 1], ids=["created-while-starting", "spare-workspace"])
async def test_bwrap_isolation(tmp_path: Path, spares: int) -> None:
    # No refill while the test looks: a loaded machine's start can outlast the default delay.
    config = backend_config(
        tmp_path, isolation="bwrap", spare_workspaces=spares, refill_delay_s=3600
    )
    async with open_local_backend(config) as backend:
        with trio.fail_after(300):
            await backend.spares.wait_filled()
        handle = await backend.ensure("iso-1", project_id="iso-1", template_id="vite")
        assert backend.statistics()["spare"] == 0
        async with httpx.AsyncClient(trust_env=False) as client:
            page = await client.get(handle.preview_upstream + "/")
        assert page.status_code == 200
        async with open_runtime_client(handle.runtime_url, handle.runtime_token) as rt:
            # The virtualenv is visible read-only (bound explicitly when it lives under /tmp,
            # which is private inside the sandbox); the checkout cannot be written either way.
            venv = Path(sys.prefix)
            outside = await rt.exec(f"touch {venv}/bwrap-escape 2>&1; echo $?")
            assert outside.stdout.strip().splitlines()[-1] != "0", outside.stdout
            assert not (venv / "bwrap-escape").exists()
            await rt.exec(f"touch {ROOT}/bwrap-escape")
            assert not (ROOT / "bwrap-escape").exists()
            inside = await rt.exec("touch ok.txt && echo yes")
            assert inside.stdout.strip() == "yes"
            pids = await rt.exec("ls /proc | grep -c '^[0-9]'")
            assert int(pids.stdout.strip()) < 20, "a private PID namespace"
        group = backend.process_ids(handle.sandbox_id)[0]
    assert not alive(group)
    assert await processes_left_under(tmp_path) == []

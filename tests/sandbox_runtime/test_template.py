"""The Vite template: init-workspace (cache + private copies), build, dev server with HMR."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio_websocket
from amicable_sandbox_runtime.templates import cache_key, template_ids
from amicable_testing.processes import free_port, wait_until

if TYPE_CHECKING:
    from conftest import StartRuntime

REPO = Path(__file__).resolve().parents[2]
NODE_CACHE = REPO / ".cache" / "node_modules"


def init_workspace(dest: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, as the local backend and the sandbox Dockerfile run it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "amicable_sandbox_runtime",
            "init-workspace",
            str(dest),
            "--template",
            "vite",
            "--cache-dir",
            str(NODE_CACHE),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )


@pytest.fixture(scope="session")
def prepared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fills the node_modules cache once (npm ci only when the lockfile hash is new)."""
    init_workspace(tmp_path_factory.mktemp("first-workspace"))
    return NODE_CACHE


@pytest.fixture
def vite_workspace(prepared_cache: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "app"
    out = init_workspace(dest)
    assert "copied node_modules" in out.stdout
    return dest


def test_templates_listed() -> None:
    assert "vite" in template_ids()
    out = subprocess.run(
        [sys.executable, "-m", "amicable_sandbox_runtime", "templates"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == template_ids()


def test_template_files() -> None:
    root = REPO / "libs/templates/src/amicable_templates/stacks/vite"
    package = json.loads((root / "package.json").read_text())
    assert {"dev", "build", "lint", "typecheck"} <= set(package["scripts"])
    assert (root / "package-lock.json").is_file()
    agents = (root / "AGENTS.md").read_text()
    for tool in ("read_file", "write_file", "edit_file", "glob", "grep", "execute", "/src/App.tsx"):
        assert tool in agents
    assert not (root / "node_modules").exists()


def test_init_workspace_never_clobbers(tmp_path: Path) -> None:
    dest = tmp_path / "existing"
    (dest / "node_modules").mkdir(parents=True)
    (dest / "package.json").write_text('{"name": "mine"}')
    out = init_workspace(dest)
    assert "keeping its files" in out.stdout
    assert json.loads((dest / "package.json").read_text()) == {"name": "mine"}
    assert not (dest / "src").exists()


@pytest.mark.slow
def test_node_modules_are_the_workspace_s_own(vite_workspace: Path, tmp_path: Path) -> None:
    """A write through node_modules in one workspace changes no byte another workspace or
    the cache reads (they used to be hard links of one cache)."""
    entry = NODE_CACHE / cache_key("vite", vite_workspace)
    cached = entry / "node_modules" / "vite" / "package.json"
    other = tmp_path / "other"
    init_workspace(other)
    before = cached.read_bytes()
    with (vite_workspace / "node_modules" / "vite" / "package.json").open("ab") as fh:
        fh.write(b"// changed in one workspace\n")
    assert cached.read_bytes() == before
    assert (other / "node_modules" / "vite" / "package.json").read_bytes() == before
    for root, _, files in os.walk(vite_workspace / "node_modules"):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            assert st.st_nlink == 1 or not os.path.isfile(os.path.join(root, name)), name
    assert (vite_workspace / "src" / "App.tsx").is_file()
    assert (vite_workspace / "AGENTS.md").is_file()


def test_hardlink_option_links_for_a_single_image_workspace(tmp_path: Path) -> None:
    entry = tmp_path / "cache" / "vite-0"
    (entry / "node_modules" / "pkg").mkdir(parents=True)
    (entry / "node_modules" / "pkg" / "index.js").write_text("x")
    from amicable_sandbox_runtime.templates import copy_node_modules

    for hardlink, dest in ((True, tmp_path / "image"), (False, tmp_path / "copy")):
        dest.mkdir()
        trio.run(lambda d=dest, h=hardlink: copy_node_modules(entry, d, lambda _: None, hardlink=h))
        linked = os.stat(dest / "node_modules" / "pkg" / "index.js").st_nlink > 1
        assert linked is hardlink


@pytest.mark.slow
async def test_template_builds_lints_and_typechecks(vite_workspace: Path) -> None:
    for script in ("typecheck", "lint", "build"):
        result = await trio.run_process(
            ["npm", "run", script],
            cwd=vite_workspace,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert result.returncode == 0, (script, result.stdout[-2000:], result.stderr[-2000:])
    html = (vite_workspace / "dist" / "index.html").read_text()
    assert '<div id="root">' in html
    assert list((vite_workspace / "dist" / "assets").glob("*.css"))


@pytest.mark.slow
async def test_dev_server_serves_root_and_hmr(
    vite_workspace: Path, start_runtime: StartRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS", ".preview.example.test")
    # as behind the Kubernetes preview router: the browser reaches HMR on 443 over wss
    monkeypatch.setenv("AMICABLE_HMR_CLIENT_PORT", "8443")
    monkeypatch.setenv("AMICABLE_HMR_PROTOCOL", "wss")
    port = free_port()
    runtime = await start_runtime(
        workspace=vite_workspace,
        preview_cmd=f"npm run dev -- --host 127.0.0.1 --port {port}",
        preview_port=port,
        preview_host="127.0.0.1",
    )

    async def ready() -> bool:
        return (await runtime.client.get("/readyz")).status_code == 200

    await wait_until(ready, 90)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as dev:
        root = await dev.get("/")
        assert root.status_code == 200
        assert '<div id="root">' in root.text
        assert "/@vite/client" in root.text
        assert (await dev.get("/src/App.tsx")).status_code == 200
        allowed = await dev.get("/", headers={"Host": "abc123.preview.example.test"})
        assert allowed.status_code == 200
        denied = await dev.get("/", headers={"Host": "evil.example.org"})
        assert denied.status_code == 403
        client_js = (await dev.get("/@vite/client")).text
    assert re.search(r"hmrPort\s*=\s*8443", client_js)
    assert re.search(r"socketProtocol\s*=\s*\"wss\"", client_js)
    token = re.search(r'wsToken\s*=\s*"([^"]+)"', client_js)
    query = f"?token={token.group(1)}" if token else ""

    with trio.fail_after(60):
        async with trio_websocket.open_websocket_url(
            f"ws://127.0.0.1:{port}/{query}", subprotocols=["vite-hmr"]
        ) as ws:
            assert json.loads(await ws.get_message())["type"] == "connected"
            # an edit through the runtime API reaches the browser as an HMR message
            source = (vite_workspace / "src" / "App.tsx").read_text()
            changed = source.replace("Your app starts here", "Edited through the runtime")
            put = await runtime.client.put("/v1/files/src/App.tsx", content=changed.encode())
            assert put.status_code == 200
            message: dict[str, Any] = {}
            while message.get("type") not in ("update", "full-reload"):
                message = json.loads(await ws.get_message())
    logs = (await runtime.client.get("/v1/preview/logs")).json()["lines"]
    assert any("VITE" in line or "Local" in line for line in logs)


async def test_concurrent_init_runs_npm_ci_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workspaces initialised at once share one cache entry built by one ``npm ci``."""
    from amicable_sandbox_runtime.templates import init_workspace as init

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "npm-calls"
    (fake_bin / "npm").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        "sleep 0.5\n"  # long enough for the second caller to find the lock taken
        "mkdir -p node_modules/pkg && echo ok > node_modules/pkg/index.js\n"
    )
    (fake_bin / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    cache = tmp_path / "cache"
    logs: list[str] = []
    async with trio.open_nursery() as nursery:
        for name in ("a", "b"):
            nursery.start_soon(init, tmp_path / name, "vite", cache, logs.append)
    assert calls.read_text().split("\n")[0].startswith("ci ")
    assert len(calls.read_text().splitlines()) == 1
    assert any("waiting for another process" in line for line in logs)
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1
    for name in ("a", "b"):
        copied = tmp_path / name / "node_modules/pkg/index.js"
        assert copied.read_text() == "ok\n"
        assert copied.stat().st_ino != (entries[0] / "node_modules/pkg/index.js").stat().st_ino


@pytest.mark.slow
def test_init_workspace_with_relative_paths(prepared_cache: Path, tmp_path: Path) -> None:
    # cp runs with the workspace as cwd: relative arguments must be made absolute first
    out = subprocess.run(
        [
            *(sys.executable, "-m", "amicable_sandbox_runtime", "init-workspace", "app"),
            *("--cache-dir", os.path.relpath(prepared_cache, tmp_path)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    assert "copied node_modules" in out.stdout
    assert (tmp_path / "app" / "node_modules" / ".bin" / "vite").exists()
    # built under another name and renamed: the supervisor starts npm once it exists
    assert not (tmp_path / "app" / ".node_modules.amicable-tmp").exists()


@pytest.mark.slow
async def test_typecheck_runs_the_native_compiler_and_catches_errors(vite_workspace: Path) -> None:
    """typecheck is TypeScript 7 (native); ESLint's parser still resolves the TypeScript 6 API."""
    script = json.loads((vite_workspace / "package.json").read_text())["scripts"]["typecheck"]
    version = await trio.run_process(
        [*script.split()[:2], "--version"], cwd=vite_workspace, capture_stdout=True
    )
    assert version.stdout.decode().startswith("Version 7."), version.stdout
    api = await trio.run_process(
        ["node", "-e", "console.log(require('typescript').version)"],
        cwd=vite_workspace,
        capture_stdout=True,
    )
    assert api.stdout.decode().startswith("6."), api.stdout
    app = vite_workspace / "src" / "App.tsx"
    app.write_text('const answer: number = "oops"\n' + app.read_text())
    failed = await trio.run_process(
        ["npm", "run", "-s", "typecheck"], cwd=vite_workspace, capture_stdout=True, check=False
    )
    assert failed.returncode != 0
    assert "TS2322" in failed.stdout.decode()

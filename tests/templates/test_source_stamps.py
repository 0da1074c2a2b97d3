"""The Vue template's source stamp, on its real dev server: ``data-amicable-source="file:line"``
on the plain elements of the project's ``.vue`` files (what the editor's Select mode sends the
model), nothing in a production build. (The Vite template's stamp: tests/agent/loop.)"""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from amicable_testing.processes import free_port

from .test_qa import init_workspace

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


async def test_vue_elements_carry_file_and_line_in_dev_and_not_in_the_build(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "app"
    await trio.to_thread.run_sync(init_workspace, "vue", workspace)
    # a component in the page: it must not get the attribute (it would be a stray prop)
    (workspace / "src" / "Badge.vue").write_text("<template><span>new</span></template>\n")
    app = workspace / "src" / "App.vue"
    app.write_text(
        app.read_text()
        .replace("import { ref } from 'vue'", "import { ref } from 'vue'\nimport Badge from './Badge.vue'")
        .replace("<h1>Your app starts here</h1>", "<h1>Your app starts here <Badge /></h1>")
    )  # fmt: skip
    lines = app.read_text().splitlines()
    h1 = next(i for i, line in enumerate(lines, 1) if "<h1" in line)
    port = free_port()
    vite = ["node", "node_modules/vite/bin/vite.js"]
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                [*vite, "--host", "127.0.0.1", "--port", str(port), "--strictPort"],
                cwd=workspace, check=False, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                with trio.fail_after(60):
                    while True:
                        try:
                            served = await http.get("/src/App.vue", timeout=30)
                            break
                        except httpx.TransportError:
                            await trio.sleep(0.1)
                badge = await http.get("/src/Badge.vue", timeout=30)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
    assert served.status_code == 200
    assert f'"data-amicable-source": "src/App.vue:{h1}"' in served.text
    # main, h1, p, code, button; not <Badge> (a component)
    assert served.text.count('"data-amicable-source"') == 5
    assert '"data-amicable-source": "src/Badge.vue:1"' in badge.text  # its own <span>

    build = await trio.run_process(
        [*vite, "build", "--logLevel", "error"],
        cwd=workspace, capture_stdout=True, capture_stderr=True, check=False,
        start_new_session=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr.decode()[-2000:]
    text = "".join(p.read_text() for p in (workspace / "dist" / "assets").glob("*.js"))
    assert "Your app starts here" in text
    assert "data-amicable-source" not in text

"""Every template live, end to end: ``amicable up`` (real agent, preview router, sandbox
runtime and the stack's real dev server), a project created through the API with the
template, ``init`` over the WebSocket, the stack's page through the router, then an edit
made through the runtime shows up — over the stack's HMR WebSocket through the router, or by
the API stacks' restart-and-reload. For the browser stacks, the preview serves the one current
runtime-error bridge, and an error thrown in the stack's page in real Chromium reaches the
embedding page the way the editor embeds the preview (``?amicableParentOrigin=``).

The stacks' dependencies come from the cache every suite shares (``.cache/node_modules``,
prepared once per template and lockfile; the first run of a new lockfile installs it).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import re
import signal
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import trio
from amicable_templates import BRIDGE_SOURCE, Template, get_template, registry
from amicable_testing import ws_recv_until, ws_send
from trio_websocket import WebSocketConnection, open_websocket_url, wrap_client_stream

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AMICABLE = str(Path(sys.executable).parent / "amicable")
CACHE = ROOT / ".cache" / "node_modules"
EDITED = "Edited through the runtime"
#: the first page of a stack compiles on demand (Next.js takes longest)
FIRST_PAGE_S = 240
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-sync"]  # fmt: skip
PLANTED = "planted runtime error"
#: the editor's side of the bridge: an iframe with the preview, collecting its messages
EMBEDDER = """<!doctype html><html><body><script>
window.__msgs = [];
window.addEventListener("message", (e) => window.__msgs.push({origin: e.origin, data: e.data}));
</script><iframe id="preview" style="width:800px;height:600px" src="SRC"></iframe></body></html>"""


@asynccontextmanager
async def amicable_up(data_dir: Path) -> AsyncIterator[dict[str, Any]]:
    ready = data_dir.parent / f"ready-{uuid.uuid4().hex}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMICABLE_", "ANTHROPIC_"))}
    env.update(
        AMICABLE_WARM_POOL_SIZE="0",
        AMICABLE_SPARE_WORKSPACES="0",
        AMICABLE_NODE_MODULES_CACHE_DIR=str(CACHE),
    )
    argv = [AMICABLE, "up", "--data-dir", str(data_dir), "--port", "0", "--preview-port", "0"]
    argv += ["--ready-file", str(ready)]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, argv, env=env, check=False, start_new_session=True)
        )
        try:
            with trio.fail_after(180):
                while not ready.exists():  # the child writes it; nothing else to wait on
                    assert process.returncode is None, "amicable up exited early"
                    await trio.sleep(0.1)
            yield json.loads(ready.read_text())
        finally:
            with trio.CancelScope(shield=True):
                process.send_signal(signal.SIGINT)
                with trio.move_on_after(60):
                    await process.wait()
                if process.returncode is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()


async def init(port: int, session_id: str) -> str:
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws_send(
            ws,
            {"type": "init", "id": str(uuid.uuid4()), "timestamp": 1,
             "data": {"session_id": session_id, "permission_mode": "default"}},
        )  # fmt: skip
        msgs = await ws_recv_until(ws, "init", timeout_s=600)
    stages = [m.data.stage for m in msgs if str(m.type) == "sandbox_status"]
    assert stages[-1] == "ready", stages
    return str(msgs[-1].data.url)


class Preview:
    """Requests to one preview through the real router (by its Host header)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        parts = urlsplit(url)
        self.client, self.netloc = client, parts.netloc
        self.base = f"http://127.0.0.1:{parts.port}"

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(self.base + path, headers={"Host": self.netloc})

    async def wait_for(self, path: str, text: str, timeout_s: float) -> str:
        """Poll ``path`` until a 200 answer contains ``text``; its body."""
        last = ""
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    page = await self.get(path)
                    last = f"{page.status_code}: {page.text[:500]}"
                    if page.status_code == 200 and text in page.text:
                        return page.text
                except httpx.HTTPError as exc:
                    last = repr(exc)
                await trio.sleep(0.5)
        raise AssertionError(f"{path} never showed {text!r}; last answer {last}")

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


@asynccontextmanager
async def hmr_socket(preview: Preview, template: Template) -> AsyncIterator[WebSocketConnection]:
    """The stack's HMR WebSocket, opened through the router with the preview's Host."""
    origin = [("Origin", f"http://{preview.netloc}")]
    if template.id == "nextjs15":
        path, protocols = "/_next/webpack-hmr", None
    else:  # Vite (React, SvelteKit, React Router): the token the client script carries
        client = await preview.wait_for("/@vite/client", "wsToken", 60)
        token = re.search(r'const wsToken = "([^"]+)"', client)
        assert token is not None
        path, protocols = f"/?token={token.group(1)}", ["vite-hmr"]
        # as the browser does: load the module, so it is in the client's module graph
        assert (await preview.get("/" + template.edit_file)).status_code == 200
    async with trio.open_nursery() as nursery:
        # the router picks the sandbox by Host: connect to it, name the preview's host
        stream = await trio.open_tcp_stream("127.0.0.1", preview.port)
        ws = await wrap_client_stream(
            nursery, stream, preview.netloc, path, subprotocols=protocols, extra_headers=origin
        )
        try:
            yield ws
        finally:
            await ws.aclose()
            nursery.cancel_scope.cancel()


async def edit(client: httpx.AsyncClient, api: str, template: Template) -> None:
    """Replace the template's marker text in its edit file, through the agent's file API
    (which writes through the sandbox runtime)."""
    path = "/" + template.edit_file
    read = await client.get(f"{api}/read", params={"path": path})
    assert read.status_code == 200, read.text
    content = read.json()["content"].replace(template.edit_from, EDITED)
    wrote = await client.put(f"{api}/write", json={"path": path, "content": content})
    assert wrote.status_code == 200, wrote.text


@contextmanager
def embedder(preview_src: str) -> Iterator[str]:
    """A page on its own origin (like the editor's) that embeds ``preview_src``; its URL."""
    holder: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = holder["page"]
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    src = f"{preview_src}?{urlencode({'amicableParentOrigin': origin})}"
    holder["page"] = EMBEDDER.replace("SRC", src).encode()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield origin + "/"
    finally:
        server.shutdown()
        server.server_close()


def runtime_error_reaches_the_embedder(preview_url: str, path: str) -> list[dict[str, Any]]:
    """In real Chromium: embed the preview, throw in its page, collect what the bridge posts.

    The error is thrown in the stack's own page (loaded through the router, with the bridge
    the stack's page loads); the embedding page must receive it, from the preview's origin.
    """
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is not installed (`make test` installs it)")
    from playwright.sync_api import sync_playwright

    preview_origin = f"{urlsplit(preview_url).scheme}://{urlsplit(preview_url).netloc}"

    def run() -> list[dict[str, Any]]:
        with embedder(preview_origin + path) as page_url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(120_000)
                page.goto(page_url)
                page.frame_locator("#preview").locator("body").wait_for()
                frame = next(f for f in page.frames if f.url.startswith(preview_origin))
                frame.wait_for_load_state("load")
                frame.evaluate(f"setTimeout(() => {{ throw new Error({PLANTED!r}) }}, 0)")
                page.wait_for_function(
                    "(text) => window.__msgs.some(m => m.data.type === 'amicable_runtime_error'"
                    " && String(m.data.payload.message).includes(text))",
                    arg=PLANTED,
                )
                msgs: list[dict[str, Any]] = page.evaluate("window.__msgs")
                return msgs
            finally:
                browser.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


async def bridge_works(preview: Preview, preview_url: str, template: Template) -> None:
    """The preview serves the one current bridge, and it reports a runtime error."""
    served = await preview.get("/amicable-runtime.js")
    assert served.status_code == 200
    assert served.content == BRIDGE_SOURCE.read_bytes()
    msgs = await trio.to_thread.run_sync(
        functools.partial(runtime_error_reaches_the_embedder, preview_url, template.dev_path)
    )
    errors = [m for m in msgs if m["data"]["type"] == "amicable_runtime_error"]
    planted = [m for m in errors if PLANTED in str(m["data"]["payload"]["message"])]
    assert planted, msgs
    assert planted[0]["origin"] == f"http://{preview.netloc}"
    assert planted[0]["data"]["payload"]["kind"] == "window_error"


async def see_edit_live(client: httpx.AsyncClient, api: str, preview: Preview, t: Template) -> None:
    # what shows the edit: the server-rendered page, or for a single-page app (its page has
    # only the mount point) the module itself
    first = (await preview.get(t.dev_path)).text
    shown_on = t.dev_path if t.edit_from in first else "/" + t.edit_file
    if t.reload == "hmr":
        async with hmr_socket(preview, t) as ws:
            with trio.move_on_after(1):  # the greeting frames (connected, sync)
                while True:
                    await ws.get_message()
            await edit(client, api, t)
            with trio.fail_after(120):
                message = await ws.get_message()  # the dev server pushed the change
            assert message
    else:
        boot = (await preview.get("/__amicable/boot")).text
        await edit(client, api, t)
        with trio.fail_after(120):
            while True:
                try:
                    now = await preview.get("/__amicable/boot")
                    if now.status_code == 200 and now.text != boot:
                        break  # the server restarted: the page's poll reloads it
                except httpx.HTTPError:
                    pass  # restarting
                await trio.sleep(0.2)
    await preview.wait_for(shown_on, EDITED, 120)


@pytest.mark.parametrize("template_id", registry().ids)
async def test_template_live_through_the_router(template_id: str, tmp_path: Path) -> None:
    template = get_template(template_id)
    async with (
        amicable_up(tmp_path / "data") as info,
        httpx.AsyncClient(trust_env=False, timeout=60) as client,
    ):
        base = f"http://127.0.0.1:{info['port']}"
        offered = (await client.get(base + "/api/templates")).json()
        assert template_id in [t["id"] for t in offered["templates"]]
        created = await client.post(
            base + "/api/projects", json={"name": f"live {template_id}", "template_id": template_id}
        )
        assert created.status_code == 200, created.text
        project_id = created.json()["project_id"]
        assert created.json()["template_id"] == template_id
        preview_url = await init(info["port"], project_id)
        preview = Preview(client, preview_url)
        await preview.wait_for(template.dev_path, template.dev_expect, FIRST_PAGE_S)
        if template.bridge:
            await bridge_works(preview, preview_url, template)
        else:  # an API stack: no bridge is written, the router serves none
            assert (await preview.get("/amicable-runtime.js")).status_code == 404
        if template.reload == "poll":
            docs = "/docs" if template.id == "fastapi" else "/api/hello"
            assert (await preview.get(docs)).status_code == 200
        await see_edit_live(client, f"{base}/api/sandbox/{project_id}", preview, template)

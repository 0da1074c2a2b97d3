"""A scripted stand-in for the agent, for end-to-end tests of the editor in Chromium.

It speaks the real editor protocol (WebSocket on ``/`` and ``/ws``, ``/api/projects*`` and
``/api/sandbox/{id}/*`` with the upstream shapes, ``/config.js``, the built editor with SPA
fallback) and serves a tiny "preview" on a second port (a different origin, like the real
preview router) whose page shows the ``<h1>`` of the project's ``/src/App.tsx``.

What a turn does depends on the prompt:

* contains ``approve`` — asks for approval (``hitl_request``) before running ``npm run build``;
* contains ``slow`` — streams ``tick N`` for up to a minute until cancelled (stop, reload);
* contains ``fail`` — reports ``qa_failed``;
* contains ``drop`` — closes the socket with 1012 (service restart) instead of a turn;
* anything else — streams text with a ``steps`` ui block, writes ``/src/App.tsx`` (its
  ``<h1>`` becomes the prompt), runs QA, sends usage and a reasoning summary.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request, websocket
from quart_trio import QuartTrio

APP_TSX = """export default function App() {
  return (
    <main>
      <h1>Hello from Amicable</h1>
    </main>
  );
}
"""

# Put on a connection's queue to make its writer close the socket with 1012.
CLOSE_SENTINEL = "\x00close"

# Delay between streamed chunks: long enough for the browser to render intermediate states.
STEP_S = 0.15


@attrs.define
class FakeProject:
    project_id: str
    name: str
    slug: str
    template_id: str
    prompt: str | None
    updated_at: float
    files: dict[str, str]
    provisioned: bool = False
    history: list[dict[str, str]] = attrs.Factory(list)
    subscribers: set[trio.MemorySendChannel[str]] = attrs.Factory(set)
    turn_scope: trio.CancelScope | None = None
    turn_log: list[str] = attrs.Factory(list)
    hitl: dict[str, Any] | None = None
    hitl_event: trio.Event | None = None
    hitl_answer: dict[str, Any] | None = None
    received: list[dict[str, Any]] = attrs.Factory(list)
    #: The project's model (set by the picker's init) and what its turns cost so far.
    model: str | None = None
    spend: float = 0.0


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (slug or "project")[:50]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class FakeAgent:
    """State and behaviour of the fake agent; ``serve`` runs both HTTP servers."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist
        self.projects: dict[str, FakeProject] = {}
        self.preview_origin = ""
        self.nursery: trio.Nursery | None = None
        #: When set, provisioning pauses at ``starting_runtime`` until the event is set, so a
        #: test can look at the progress indicator without racing the fake's timing.
        self.provisioning_gate: trio.Event | None = None
        #: The models INIT offers (the picker's extension); none: an agent without it.
        self.models: list[dict[str, Any]] = []

    # -- helpers -----------------------------------------------------------------------

    def create_project(self, name: str, prompt: str | None = None) -> FakeProject:
        pid = str(uuid.uuid4())
        slug = slugify(name)
        if any(p.slug == slug for p in self.projects.values()):
            slug = f"{slug}-{pid[:4]}"
        project = FakeProject(
            project_id=pid,
            name=name,
            slug=slug,
            template_id="vite",
            prompt=prompt,
            updated_at=time.time(),
            files={
                "/src/App.tsx": APP_TSX,
                "/index.html": "<div id=root></div>\n",
                "/package.json": "{}\n",
            },
        )
        self.projects[pid] = project
        return project

    def summary(self, p: FakeProject) -> dict[str, Any]:
        return {
            "project_id": p.project_id,
            "name": p.name,
            "slug": p.slug,
            "template_id": p.template_id,
            "created_at": iso(p.updated_at),
            "updated_at": iso(p.updated_at),
        }

    def envelope(
        self, p: FakeProject, mtype: str, data: dict[str, Any], mid: str | None = None
    ) -> str:
        return json.dumps(
            {
                "id": mid or str(uuid.uuid4()),
                "type": mtype,
                "data": data,
                "timestamp": int(time.time() * 1000),
                "session_id": p.project_id,
            }
        )

    def broadcast(
        self, p: FakeProject, mtype: str, data: dict[str, Any], mid: str | None = None
    ) -> None:
        frame = self.envelope(p, mtype, data, mid)
        if p.turn_scope is not None:
            p.turn_log.append(frame)
        for chan in list(p.subscribers):
            try:
                chan.send_nowait(frame)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                p.subscribers.discard(chan)

    def init_data(self, p: FakeProject, exists: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "url": f"{self.preview_origin}/preview/{p.project_id}/",
            "sandbox_id": f"sb-{p.project_id[:8]}",
            "exists": exists,
            "app_id": p.project_id,
            "template_id": p.template_id,
            "project": {
                "project_id": p.project_id,
                "name": p.name,
                "slug": p.slug,
                "template_id": p.template_id,
            },
            "conversation_history": p.history[-20:],
            "permission_mode": "default",
            "thinking_level": "none",
        }
        if p.hitl is not None:
            data["hitl_pending"] = p.hitl
        if self.models:  # the model picker's extension
            data["models"] = self.models
            data["model"] = p.model or self.models[0]["id"]
            data["spend"] = {"cost_usd": p.spend, "input_tokens": 0, "output_tokens": 0}
        return data

    # -- turns -------------------------------------------------------------------------

    async def run_turn(self, p: FakeProject, text: str) -> None:
        plan_id = str(uuid.uuid4())
        p.turn_log = []
        with trio.CancelScope() as scope:
            p.turn_scope = scope
            self.broadcast(p, "update_in_progress", {})
            try:
                if "approve" in text:
                    final = await self._turn_hitl(p, plan_id)
                elif "slow" in text:
                    final = await self._turn_slow(p, plan_id)
                elif "fail" in text:
                    final = await self._turn_fail(p, plan_id)
                else:
                    final = await self._turn_write(p, plan_id, text)
                p.history.append({"role": "assistant", "text": final})
            finally:
                p.turn_scope = None
        if scope.cancelled_caught:
            p.hitl = None
            self.broadcast(p, "error", {"error": "cancelled", "detail": "Stopped by the user."})
        self.broadcast(p, "update_completed", {})
        p.turn_log = []

    async def _stream(self, p: FakeProject, plan_id: str, prefix: str, words: list[str]) -> str:
        text = prefix
        for word in words:
            text += word
            self.broadcast(p, "agent_partial", {"text": text}, plan_id)
            await trio.sleep(STEP_S)
        return text

    async def _turn_write(self, p: FakeProject, plan_id: str, prompt: str) -> str:
        steps = {
            "type": "steps",
            "title": "Plan",
            "steps": [
                {"title": "Update the heading", "status": "done"},
                {"title": "Run the checks", "status": "active"},
            ],
        }
        text = await self._stream(
            p, plan_id, "", ["I'll ", "update ", "the ", "**heading** ", "now.\n\n"]
        )
        text += "```ui\n" + json.dumps(steps) + "\n```\n"
        self.broadcast(p, "agent_partial", {"text": text}, plan_id)
        self.broadcast(p, "update_file", {"text": "Editing /src/App.tsx"}, f"f-{plan_id}")
        run_id = str(uuid.uuid4())
        heading = html.escape(prompt.strip()[:80])
        self.broadcast(
            p,
            "trace_event",
            {
                "phase": "tool_start",
                "tool_name": "write_file",
                "input": {"file_path": "/src/App.tsx", "content": f"<h1>{heading}</h1>"},
                "run_id": run_id,
                "assistant_msg_id": plan_id,
            },
        )
        await trio.sleep(STEP_S)
        p.files["/src/App.tsx"] = re.sub(
            r"<h1>.*?</h1>", f"<h1>{heading}</h1>", p.files["/src/App.tsx"]
        )
        self.broadcast(
            p,
            "trace_event",
            {
                "phase": "tool_end",
                "tool_name": "write_file",
                "output": "Wrote /src/App.tsx",
                "run_id": run_id,
                "assistant_msg_id": plan_id,
                "duration_ms": 150,
            },
        )
        qa_id = str(uuid.uuid4())
        self.broadcast(
            p,
            "update_file",
            {"text": "Running QA checks (lint/typecheck/build)..."},
            f"f-{plan_id}",
        )
        self.broadcast(
            p,
            "trace_event",
            {
                "phase": "tool_start",
                "tool_name": "qa",
                "input": {"command": "npm run build"},
                "run_id": qa_id,
                "assistant_msg_id": plan_id,
            },
        )
        await trio.sleep(STEP_S)
        self.broadcast(
            p,
            "trace_event",
            {
                "phase": "tool_end",
                "tool_name": "qa",
                "output": {"exit_code": 0},
                "run_id": qa_id,
                "assistant_msg_id": plan_id,
                "duration_ms": 900,
            },
        )
        text = await self._stream(p, plan_id, text, ["Done: ", "the heading ", "is updated."])
        self.broadcast(p, "agent_final", {"text": text}, plan_id)
        self.broadcast(
            p,
            "trace_event",
            {
                "phase": "reasoning_summary",
                "tool_name": "reasoning",
                "text": "[reasoning] I changed the heading and ran the build.",
                "assistant_msg_id": plan_id,
            },
        )
        p.spend = round(p.spend + 0.0123, 6)
        usage: dict[str, Any] = {"input_tokens": 1200, "output_tokens": 340,
                                 "cache_read_input_tokens": 800, "cost_usd": 0.0123,
                                 "model": "claude-fake"}  # fmt: skip
        if self.models:
            usage["project"] = {"cost_usd": p.spend, "input_tokens": 2000 * int(p.spend / 0.0123),
                                "output_tokens": 340 * int(p.spend / 0.0123)}  # fmt: skip
        self.broadcast(p, "usage", usage)
        return text

    async def _turn_slow(self, p: FakeProject, plan_id: str) -> str:
        text = "Working slowly:"
        for n in range(1, 400):
            text += f" tick {n}"
            self.broadcast(p, "agent_partial", {"text": text}, plan_id)
            await trio.sleep(STEP_S)
        self.broadcast(p, "agent_final", {"text": text}, plan_id)
        return text

    async def _turn_fail(self, p: FakeProject, plan_id: str) -> str:
        text = await self._stream(p, plan_id, "", ["Trying ", "to build."])
        self.broadcast(
            p,
            "error",
            {
                "error": "qa_failed",
                "detail": "QA failed on `npm run build` (exit 2). Output:\n\nsrc/App.tsx(3,1): error TS2304",
                "qa_results": [{"command": "npm run build", "exit_code": 2, "truncated": False}],
            },
        )
        return text

    async def _turn_hitl(self, p: FakeProject, plan_id: str) -> str:
        text = await self._stream(p, plan_id, "", ["I need ", "to run ", "a build."])
        interrupt_id = str(uuid.uuid4())
        p.hitl = {
            "interrupt_id": interrupt_id,
            "request": {
                "action_requests": [
                    {
                        "name": "execute",
                        "args": {"command": "npm run build"},
                        "description": "Run a shell command",
                    }
                ],
                "review_configs": [
                    {"action_name": "execute", "allowed_decisions": ["approve", "edit", "reject"]}
                ],
            },
        }
        p.hitl_event = trio.Event()
        self.broadcast(p, "hitl_request", p.hitl)
        self.broadcast(p, "agent_final", {"text": text}, plan_id)
        await p.hitl_event.wait()
        answer = p.hitl_answer or {}
        p.hitl = None
        decision = (answer.get("decisions") or [{}])[0]
        run_id = str(uuid.uuid4())
        if decision.get("type") == "reject":
            self.broadcast(
                p,
                "trace_event",
                {
                    "phase": "tool_error",
                    "tool_name": "execute",
                    "error": f"Rejected: {decision.get('message', '')}",
                    "run_id": run_id,
                    "assistant_msg_id": plan_id,
                },
            )
            return await self._stream(
                p, plan_id, text, [" The build was rejected, so I skipped it."]
            )
        command = "npm run build"
        if decision.get("type") == "edit":
            command = decision["edited_action"]["args"].get("command", command)
        self.broadcast(
            p,
            "trace_event",
            {
                "phase": "tool_start",
                "tool_name": "execute",
                "input": {"command": command},
                "run_id": run_id,
                "assistant_msg_id": plan_id,
            },
        )
        await trio.sleep(STEP_S)
        self.broadcast(
            p,
            "trace_event",
            {
                "phase": "tool_end",
                "tool_name": "execute",
                "output": f"$ {command}\nok",
                "run_id": run_id,
                "assistant_msg_id": plan_id,
                "duration_ms": 150,
            },
        )
        return await self._stream(p, plan_id, text, [f" Approved: ran {command}."])

    # -- WebSocket ---------------------------------------------------------------------

    async def handle_ws(self) -> None:
        send, recv = trio.open_memory_channel[str](1000)
        project: FakeProject | None = None

        async def writer() -> None:
            async with recv:
                async for frame in recv:
                    if frame == CLOSE_SENTINEL:
                        await websocket.close(1012)
                        nursery.cancel_scope.cancel()
                        return
                    await websocket.send(frame)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            try:
                while True:
                    raw = await websocket.receive()
                    msg = json.loads(raw)
                    data = msg.get("data") or {}
                    mtype = msg.get("type")
                    sid = data.get("session_id")
                    if project is None and mtype != "init":
                        continue
                    if mtype == "init":
                        project = self.projects.get(sid or "")
                        if project is None:
                            await websocket.close(1008)
                            return
                        project.received.append(msg)
                        if data.get("model"):
                            project.model = data["model"]
                        await self._attach(project, send)
                        continue
                    assert project is not None
                    project.received.append(msg)
                    await self._on_client(project, mtype, data, send)
            finally:
                if project is not None:
                    project.subscribers.discard(send)
                nursery.cancel_scope.cancel()

    async def _attach(self, p: FakeProject, send: trio.MemorySendChannel[str]) -> None:
        exists = p.provisioned
        if not p.provisioned:
            for stage, message in [
                ("queued", "Waiting for a sandbox"),
                ("creating", "Creating the workspace"),
                ("starting_runtime", "Starting the sandbox runtime"),
                ("starting_preview", "Starting the dev server"),
            ]:
                await send.send(
                    self.envelope(
                        p, "sandbox_status", {"stage": stage, "message": message, "elapsed_ms": 250}
                    )
                )
                if stage == "starting_runtime" and self.provisioning_gate is not None:
                    await self.provisioning_gate.wait()
                await trio.sleep(0.4)
            p.provisioned = True
        await send.send(self.envelope(p, "init", self.init_data(p, exists)))
        for frame in list(p.turn_log):  # re-attach to the running turn
            await send.send(frame)
        p.subscribers.add(send)

    async def _on_client(
        self, p: FakeProject, mtype: str, data: dict[str, Any], send: trio.MemorySendChannel[str]
    ) -> None:
        if mtype == "ping":
            await send.send(self.envelope(p, "pong", {}))
        elif mtype == "user":
            if p.hitl is not None:
                await send.send(
                    self.envelope(
                        p,
                        "error",
                        {
                            "error": "HITL approval pending. Approve/reject the pending tool call to continue."
                        },
                    )
                )
                return
            text = data.get("text") or ""
            if "over budget" in text:
                detail = ("Your daily budget of $0.02 is used up ($0.0246 spent today). It resets "
                          "at midnight UTC; an admin can raise it.")  # fmt: skip
                await send.send(self.envelope(p, "error", {"error": "budget_exceeded",
                                                           "detail": detail}))  # fmt: skip
                return
            if "drop" in text:
                await send.send(CLOSE_SENTINEL)
                return
            p.history.append({"role": "user", "text": text})
            assert self.nursery is not None
            self.nursery.start_soon(self.run_turn, p, text)
        elif mtype == "runtime_error":
            # Observable answer for tests: the agent declines to auto-heal.
            fingerprint = (data.get("error") or {}).get("fingerprint")
            await send.send(
                self.envelope(
                    p,
                    "error",
                    {
                        "error": "runtime_auto_heal_paused",
                        "detail": "fake agent",
                        "fingerprint": fingerprint,
                    },
                )
            )
        elif mtype == "cancel":
            if p.turn_scope is not None:
                p.turn_scope.cancel()
        elif mtype == "hitl_response":
            if p.hitl is None or data.get("interrupt_id") != p.hitl["interrupt_id"]:
                await send.send(
                    self.envelope(p, "error", {"error": "no pending HITL request for this session"})
                )
                return
            p.hitl_answer = data.get("response")
            if p.hitl_event is not None:
                p.hitl_event.set()


def _error(status: int, code: str, detail: str | None = None) -> tuple[dict[str, Any], int]:
    body: dict[str, Any] = {"error": code}
    if detail:
        body["detail"] = detail
    return body, status


def build_app(agent: FakeAgent) -> QuartTrio:
    """The agent-side app (editor, API, WebSocket)."""
    app = QuartTrio("fake_agent", static_folder=None)

    @app.get("/config.js")
    async def config_js() -> Response:
        return Response("window.__AMICABLE_CONFIG__ = {};\n", mimetype="application/javascript")

    @app.get("/api/projects")
    async def list_projects() -> Any:
        items = sorted(agent.projects.values(), key=lambda p: p.updated_at, reverse=True)
        return {"projects": [agent.summary(p) for p in items]}

    @app.post("/api/projects")
    async def create_project() -> Any:
        body = await request.get_json()
        template = body.get("template_id") or "vite"
        if template != "vite":
            return _error(400, "invalid_template_id")
        name = (body.get("name") or "").strip() or " ".join(
            (body.get("prompt") or "Untitled").split()[:3]
        )
        p = agent.create_project(name, body.get("prompt"))
        return {
            "project_id": p.project_id,
            "name": p.name,
            "slug": p.slug,
            "prompt": p.prompt,
            "template_id": p.template_id,
        }

    @app.get("/api/projects/by-slug/<slug>")
    async def by_slug(slug: str) -> Any:
        for p in agent.projects.values():
            if p.slug == slug:
                return agent.summary(p)
        return _error(404, "not_found")

    @app.patch("/api/projects/<pid>")
    async def rename(pid: str) -> Any:
        p = agent.projects.get(pid)
        if p is None:
            return _error(404, "not_found")
        body = await request.get_json()
        p.name = body["name"]
        p.slug = slugify(p.name)
        p.updated_at = time.time()
        return {"project_id": p.project_id, "name": p.name, "slug": p.slug}

    @app.delete("/api/projects/<pid>")
    async def delete(pid: str) -> Any:
        if agent.projects.pop(pid, None) is None:
            return _error(404, "not_found")
        return {"status": "deleting"}, 202

    def project_or_404(pid: str) -> FakeProject | None:
        return agent.projects.get(pid)

    @app.get("/api/sandbox/<pid>/ls")
    async def ls(pid: str) -> Any:
        p = project_or_404(pid)
        if p is None:
            return _error(404, "not_found")
        path = request.args.get("path", "/").rstrip("/") or "/"
        prefix = "/" if path == "/" else path + "/"
        entries: dict[str, bool] = {}
        for f in p.files:
            if f.startswith(prefix):
                rest = f[len(prefix) :]
                head = rest.split("/", 1)[0]
                if head:
                    entries[head] = entries.get(head, False) or "/" in rest
        return {
            "path": path,
            "entries": [
                {"path": prefix + n, "name": n, "is_dir": d} for n, d in sorted(entries.items())
            ],
        }

    @app.get("/api/sandbox/<pid>/read")
    async def read(pid: str) -> Any:
        p = project_or_404(pid)
        path = request.args.get("path", "")
        if p is None or path not in p.files:
            return _error(404, "not_found")
        content = p.files[path]
        return {"path": path, "content": content, "sha256": sha(content), "is_binary": False}

    @app.put("/api/sandbox/<pid>/write")
    async def write(pid: str) -> Any:
        p = project_or_404(pid)
        if p is None:
            return _error(404, "not_found")
        body = await request.get_json()
        path, content, expected = body["path"], body["content"], body.get("expected_sha256")
        if expected is not None:
            if path not in p.files:
                return _error(404, "not_found")
            if sha(p.files[path]) != expected:
                return _error(409, "conflict", "the file changed since it was read")
        p.files[path] = content
        return {"path": path, "sha256": sha(content)}

    @app.post("/api/sandbox/<pid>/create")
    async def create(pid: str) -> Any:
        p = project_or_404(pid)
        if p is None:
            return _error(404, "not_found")
        body = await request.get_json()
        path = body["path"]
        if body["kind"] == "dir":
            p.files[path.rstrip("/") + "/.keep"] = ""
            return {"path": path}
        p.files[path] = body.get("content", "")
        return {"path": path, "sha256": sha(p.files[path])}

    @app.post("/api/sandbox/<pid>/rename")
    async def move(pid: str) -> Any:
        p = project_or_404(pid)
        if p is None:
            return _error(404, "not_found")
        body = await request.get_json()
        src, dst = body["from"], body["to"]
        for f in list(p.files):
            if f == src or f.startswith(src + "/"):
                p.files[dst + f[len(src) :]] = p.files.pop(f)
        return {"from": src, "to": dst}

    @app.delete("/api/sandbox/<pid>/rm")
    async def rm(pid: str) -> Any:
        p = project_or_404(pid)
        if p is None:
            return _error(404, "not_found")
        path = request.args.get("path", "")
        for f in list(p.files):
            if f == path or f.startswith(path + "/"):
                del p.files[f]
        return {"path": path}

    @app.websocket("/ws")
    async def ws() -> None:
        await agent.handle_ws()

    @app.websocket("/")
    async def ws_root() -> None:
        await agent.handle_ws()

    @app.get("/")
    async def index() -> Response:
        return await static_file("index.html")

    @app.get("/<path:rel>")
    async def editor_file(rel: str) -> Response:
        return await static_file(rel)

    async def static_file(rel: str) -> Response:
        root = agent.dist.resolve()
        target = (root / rel).resolve()
        if not target.is_file() or root not in target.parents:
            target = root / "index.html"  # SPA route
        types = {
            ".js": "application/javascript",
            ".css": "text/css",
            ".html": "text/html",
            ".svg": "image/svg+xml",
            ".map": "application/json",
        }
        return Response(
            target.read_bytes(), mimetype=types.get(target.suffix, "application/octet-stream")
        )

    return app


#: The real runtime bridge init-workspace writes into every browser stack; the fake preview
#: pages load it.
RUNTIME_BRIDGE = (
    Path(__file__).resolve().parents[3]
    / "libs/templates/src/amicable_templates/bridge/amicable-runtime.js"
)


def build_preview_app(agent: FakeAgent) -> QuartTrio:
    """The preview origin: one page per project showing the <h1> of /src/App.tsx.

    Pages load the template's real runtime bridge (``/amicable-runtime.js``) except
    ``/no-bridge``, which imitates an app whose index.html lost the bridge's script tag.
    """
    app = QuartTrio("fake_preview", static_folder=None)

    @app.get("/amicable-runtime.js")
    async def runtime_bridge() -> Any:
        return Response(RUNTIME_BRIDGE.read_text(), mimetype="application/javascript")

    @app.get("/preview/<pid>/")
    @app.get("/preview/<pid>/<path:rel>")
    async def preview(pid: str, rel: str = "") -> Any:
        p = agent.projects.get(pid)
        if p is None:
            return "no such preview", 404
        m = re.search(r"<h1>(.*?)</h1>", p.files.get("/src/App.tsx", ""))
        heading = m.group(1) if m else "(no heading)"
        # /boom imitates the runtime bridge reporting an uncaught error to the editor.
        boom = (
            "<script>parent.postMessage({type:'amicable_runtime_error',payload:{kind:'window_error',"
            "message:'boom is not defined',stack:'at App (App.tsx:3)',url:location.href}},'*')</script>"
            if rel == "boom"
            else ""
        )
        bridge = "" if rel == "no-bridge" else "<script src='/amicable-runtime.js'></script>"
        page = (
            "<!doctype html><html><head>"
            + bridge
            + "<style>body{font-family:system-ui,sans-serif;margin:0;"
            "display:grid;place-items:center;min-height:100vh;background:#fafafa;color:#222}"
            "h1{font-size:28px;text-align:center;padding:0 16px}</style></head>"
            f"<body><main><h1 id='heading'>{heading}</h1><p id='path'>/{html.escape(rel)}</p>"
            "<p id='width'></p></main><script>const w=()=>{document.getElementById('width')"
            ".textContent='width ' + window.innerWidth};w();addEventListener('resize', w)"
            "</script>" + boom + "</body></html>"
        )
        return Response(page, mimetype="text/html")

    return app


async def serve(
    agent: FakeAgent, *, task_status: trio.TaskStatus[tuple[str, str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the agent app and the preview app on free loopback ports.

    ``task_status.started((agent_origin, preview_origin))`` once both listen.

    Cancellation: cancelling the caller's scope stops both servers and every running turn.
    """

    def config() -> HypercornConfig:
        cfg = HypercornConfig()
        cfg.bind = ["127.0.0.1:0"]
        cfg.accesslog = None
        cfg.errorlog = None
        cfg.graceful_timeout = 0.1
        return cfg

    async with trio.open_nursery() as nursery:
        agent.nursery = nursery
        preview_binds = await nursery.start(hypercorn_serve, build_preview_app(agent), config())
        agent.preview_origin = preview_binds[0].replace("127.0.0.1", "localhost")
        agent_binds = await nursery.start(hypercorn_serve, build_app(agent), config())
        task_status.started((agent_binds[0], agent.preview_origin))

"""Projects API, sandbox file API (over an in-process workspace runtime) and the preview
resolver, against a real agent server."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from amicable_agent.http.resolver import preview_label
from amicable_agent.sandboxes.base import sandbox_id_for


async def test_projects_crud(api: Any) -> None:
    c = api.client
    created = (await c.post("/api/projects", json={"name": "Todo App", "prompt": "todos"})).json()
    assert set(created) == {"project_id", "name", "slug", "prompt", "template_id", "role"}
    assert (created["slug"], created["template_id"]) == ("todo-app", "vite")
    uuid.UUID(created["project_id"])
    pid = created["project_id"]
    listed = (await c.get("/api/projects")).json()["projects"]
    assert [p["project_id"] for p in listed] == [pid]
    assert set(listed[0]) == {
        "role",
        "project_id",
        "name",
        "slug",
        "template_id",
        "created_at",
        "updated_at",
    }
    assert (await c.get(f"/api/projects/{pid}")).json()["slug"] == "todo-app"
    assert (await c.get("/api/projects/by-slug/todo-app")).json()["project_id"] == pid
    renamed = await c.patch(f"/api/projects/{pid}", json={"name": "Shop"})
    assert renamed.json() == {"project_id": pid, "name": "Shop", "slug": "shop"}
    assert (await c.patch(f"/api/projects/{pid}", json={"name": " "})).json()[
        "error"
    ] == "missing_name"
    bad = await c.post("/api/projects", json={"template_id": "cobol"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_template_id")
    assert (await c.get("/api/projects/by-slug/Not_A_Slug")).json()["error"] == "invalid_slug"
    assert (await c.get("/api/projects/..%2Fetc")).status_code in (400, 404)
    missing = await c.get(f"/api/projects/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    untitled = (await c.post("/api/projects", json={})).json()
    assert untitled["name"] == "Untitled"
    # Without a small model, a prompt without a name names the project by its first words.
    named = await c.post("/api/projects", json={"prompt": "Build me a todo app with tags"})
    assert named.json()["name"] == "Todo App With Tags"

    deleted = await c.delete(f"/api/projects/{pid}")
    assert (deleted.status_code, deleted.json()) == (202, {"status": "deleting"})
    assert (await c.get(f"/api/projects/{pid}")).status_code == 404
    with trio.fail_after(10):
        await api.backend.wait_deleted(sandbox_id_for(pid))
    assert (await c.delete(f"/api/projects/{pid}")).status_code == 404


async def test_sandbox_file_api(api: Any) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Files"})).json()["project_id"]
    base = f"/api/sandbox/{pid}"
    created = await c.post(
        base + "/create", json={"path": "src/App.tsx", "kind": "file", "content": "v1"}
    )
    assert created.json() == {"path": "/src/App.tsx", "sha256": hashlib.sha256(b"v1").hexdigest()}
    read = (await c.get(base + "/read", params={"path": "/src/App.tsx"})).json()
    assert read == {
        "path": "/src/App.tsx",
        "content": "v1",
        "sha256": hashlib.sha256(b"v1").hexdigest(),
        "is_binary": False,
    }
    ok = await c.put(
        base + "/write",
        json={"path": "/src/App.tsx", "content": "v2", "expected_sha256": read["sha256"]},
    )
    assert ok.status_code == 200
    stale = await c.put(
        base + "/write",
        json={"path": "/src/App.tsx", "content": "v3", "expected_sha256": read["sha256"]},
    )
    assert (stale.status_code, stale.json()["error"]) == (409, "conflict")
    assert (await c.post(base + "/mkdir", json={"path": "/src/lib"})).json() == {"path": "/src/lib"}
    assert (await c.post(base + "/create", json={"path": "/x", "kind": "link"})).json()[
        "error"
    ] == "invalid_kind"
    moved = await c.post(base + "/rename", json={"from": "/src/App.tsx", "to": "/src/Main.tsx"})
    assert moved.json() == {"from": "/src/App.tsx", "to": "/src/Main.tsx"}
    (api.workspaces / sandbox_id_for(pid) / ".git").mkdir()  # the checkpoints' repository
    root = (await c.get(base + "/ls", params={"path": "/"})).json()
    assert ".git" not in [e["name"] for e in root["entries"]]
    assert "src" in [e["name"] for e in root["entries"]]
    listing = (await c.get(base + "/ls", params={"path": "/src"})).json()
    assert listing["entries"] == [
        {"path": "/src/Main.tsx", "name": "Main.tsx", "is_dir": False},
        {"path": "/src/lib", "name": "lib", "is_dir": True},
    ]
    (api.workspaces / sandbox_id_for(pid) / "bin.dat").write_bytes(b"\x00\x01")
    binary = (await c.get(base + "/read", params={"path": "bin.dat"})).json()
    assert (binary["content"], binary["is_binary"]) == (None, True)
    assert (await c.delete(base + "/rm", params={"path": "/src", "recursive": "1"})).json() == {
        "path": "/src"
    }
    gone = await c.get(base + "/read", params={"path": "/src/Main.tsx"})
    assert (gone.status_code, gone.json()["error"]) == (404, "not_found")
    for path, status, code in [
        ("../etc/passwd", 400, "invalid_path"),
        ("/src/../../x", 400, "invalid_path"),
        ("", 400, "invalid_path"),
        ("/src/main.tsx", 403, "permission_denied"),
        ("/node_modules/react/index.js", 403, "permission_denied"),
        ("/.git/config", 403, "permission_denied"),
    ]:
        r = await c.put(base + "/write", json={"path": path, "content": "x"})
        assert (r.status_code, r.json()["error"]) == (status, code), path
    unknown = await c.get(f"/api/sandbox/{uuid.uuid4()}/ls")
    assert unknown.status_code == 404


async def test_project_download(api: Any) -> None:
    c = api.client
    made = (await c.post("/api/projects", json={"name": "Todo App"})).json()
    pid = made["project_id"]
    ws = api.workspaces / sandbox_id_for(pid)
    await c.post(
        f"/api/sandbox/{pid}/create", json={"path": "src/App.tsx", "kind": "file", "content": "v1"}
    )
    (ws / "node_modules" / "react").mkdir(parents=True)
    (ws / "node_modules" / "react" / "index.js").write_text("x")
    (ws / ".env.local").write_text("SECRET=1")
    zipped = await c.get(f"/api/sandbox/{pid}/download")
    assert zipped.status_code == 200
    assert zipped.headers["content-type"] == "application/zip"
    assert zipped.headers["content-disposition"] == 'attachment; filename="todo-app.zip"'
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
        assert zf.namelist() == ["src/App.tsx"]
        assert zf.read("src/App.tsx") == b"v1"
    tgz = await c.get(f"/api/sandbox/{pid}/download", params={"format": "tar.gz"})
    assert tgz.headers["content-disposition"] == 'attachment; filename="todo-app.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(tgz.content), mode="r:gz") as tar:
        assert tar.getnames() == ["src/App.tsx"]
    bad = await c.get(f"/api/sandbox/{pid}/download", params={"format": "rar"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")
    unknown = await c.get(f"/api/sandbox/{uuid.uuid4()}/download")
    assert unknown.status_code == 404


async def test_preview_resolver(api: Any) -> None:
    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Shop"})).json()["project_id"]
    await api.backend.ensure(pid, project_id=pid, template_id="vite")
    async with httpx.AsyncClient(base_url=api.internal, trust_env=False) as internal:
        url = "/internal/preview/resolve"
        no_token = await internal.get(url, params={"host": "shop.preview.localhost:8080"})
        assert no_token.status_code == 403
        hdr = {"X-Amicable-Preview-Token": "sekrit"}
        ok = await internal.get(url, params={"host": "shop.preview.localhost:8080"}, headers=hdr)
        assert ok.status_code == 200
        assert ok.json() == {
            "sandbox_id": sandbox_id_for(pid),
            "upstream": "http://127.0.0.1:41234",
        }
        assert ok.headers["X-Amicable-Sandbox-Id"] == sandbox_id_for(pid)
        by_id = await internal.get(
            url, params={"host": f"{sandbox_id_for(pid)}.preview.localhost"}, headers=hdr
        )
        assert by_id.json()["sandbox_id"] == sandbox_id_for(pid)
        for host in [
            "nobody.preview.localhost",
            "a.b.preview.localhost",
            "shop.evil.com",
            "-x.preview.localhost",
        ]:
            r = await internal.get(url, params={"host": host}, headers=hdr)
            assert r.status_code == 404, host
    public = await c.get("/internal/preview/resolve", params={"host": "shop.preview.localhost"})
    assert public.status_code == 404, "the resolver is not on the public port"


@pytest.mark.parametrize(
    ("host", "label"),
    [
        ("shop.preview.localhost", "shop"),
        ("Shop.Preview.Localhost:8080", "shop"),
        ("shop", "shop"),
        ("a.b.preview.localhost", None),
        ("shop.other.example", None),
        ("[::1]:8080", None),
        ("sh_op.preview.localhost", None),
    ],
)
def test_preview_label(host: str, label: str | None) -> None:
    assert preview_label(host, "preview.localhost") == label


async def test_healthz_config_js_and_editor_dist(agent_factory: Any, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html>editor</html>")
    (dist / "assets" / "app.js").write_text("console.log(1)")
    async with (
        agent_factory(config={"editor_dist": dist}) as running,
        httpx.AsyncClient(base_url=running.http, trust_env=False) as c,
    ):
        assert (await c.get("/healthz")).json()["status"] == "ok"
        js = await c.get("/config.js")
        assert js.text.startswith("window.__AMICABLE_CONFIG__")
        assert js.headers["cache-control"] == "no-store"
        assert (await c.get("/")).text == "<html>editor</html>"
        assert (await c.get("/assets/app.js")).text == "console.log(1)"
        assert (await c.get("/p/some-project")).text == "<html>editor</html>"
        assert (await c.get("/assets/missing.js")).status_code == 404
        assert (await c.get("/../pyproject.toml")).status_code == 404


async def test_preview_resolver_answers_503_when_the_backend_fails(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend error (e.g. the Kubernetes API is down) is a 503 the router won't cache as
    "unknown", never a 500 page or a guess."""
    from amicable_agent.errors import SandboxError

    pid = (await api.client.post("/api/projects", json={"name": "Down"})).json()["project_id"]
    await api.backend.ensure(pid, project_id=pid, template_id="vite")

    async def broken_lookup(sandbox_id: str) -> None:
        raise SandboxError("the Kubernetes API answered 500")

    monkeypatch.setattr(api.backend, "lookup", broken_lookup)
    async with httpx.AsyncClient(base_url=api.internal, trust_env=False) as internal:
        r = await internal.get(
            "/internal/preview/resolve",
            params={"host": "down.preview.localhost"},
            headers={"X-Amicable-Preview-Token": "sekrit"},
        )
    assert r.status_code == 503
    assert r.json() == {"error": "backend_unavailable", "detail": "the Kubernetes API answered 500"}


async def test_templates_route_lists_what_projects_may_use(api: Any) -> None:
    from amicable_templates import registry

    c = api.client
    answer = (await c.get("/api/templates")).json()
    assert answer["default"] == "vite"
    assert [t["id"] for t in answer["templates"]] == list(registry().ids)
    assert {"id", "name", "description", "deps", "reload", "qa"} <= set(answer["templates"][0])
    for offered in answer["templates"]:  # everything listed can be created
        made = await c.post(
            "/api/projects", json={"name": offered["id"], "template_id": offered["id"]}
        )
        assert (made.status_code, made.json()["template_id"]) == (200, offered["id"])


async def test_only_enabled_templates_are_offered_and_accepted(
    agent_factory: Any, tmp_path: Path
) -> None:
    from amicable_testing.fake_sandbox_backend import FakeSandboxBackend

    config = {"templates": ("vite", "fastapi"), "preview_resolver_token": "sekrit"}
    async with (
        agent_factory(backend=FakeSandboxBackend(), config=config) as running,
        httpx.AsyncClient(base_url=running.http, trust_env=False) as c,
    ):
        listed = (await c.get("/api/templates")).json()["templates"]
        assert [t["id"] for t in listed] == ["vite", "fastapi"]
        refused = await c.post("/api/projects", json={"template_id": "nextjs15"})
        assert refused.status_code == 400
        assert refused.json() == {
            "error": "invalid_template_id",
            "detail": "known templates: vite, fastapi",
        }


async def test_older_turns_are_paged_over_http(api: Any) -> None:
    from amicable_agent.sessions.transcript import RECORD_KIND
    from amicable_agent.store import open_store

    c = api.client
    pid = (await c.post("/api/projects", json={"name": "Paged"})).json()["project_id"]
    async with open_store(api.config) as store:  # the agent's own SQLite file
        for i in range(23):
            record = {"turn_id": f"t{i}", "events": [{"type": "turn_started", "data": {}}]}
            await store.append_turn_event(pid, RECORD_KIND, record)
        newest = await store.turn_records(pid, limit=20)
    cursor = newest[-1][0]  # INIT's turns_before: the oldest turn it carried
    page = (await c.get(f"/api/projects/{pid}/turns", params={"before": cursor})).json()
    assert [t["turn_id"] for t in page["turns"]] == ["t0", "t1", "t2"]
    assert "before" not in page  # the oldest page
    first = (await c.get(f"/api/projects/{pid}/turns")).json()
    assert len(first["turns"]) == 20
    assert first["before"] == cursor
    for bad in ("0", "-1", "x", "1" * 30):
        r = await c.get(f"/api/projects/{pid}/turns", params={"before": bad})
        assert (r.status_code, r.json()["error"]) == (400, "invalid_cursor")
    r = await c.get("/api/projects/no-such-project/turns")
    assert r.status_code == 404

"""The editor's file API refuses to delete or rename away the template's protected files
(``[files] protected``), against a real agent server over an in-process workspace runtime."""

from __future__ import annotations

from typing import Any

from amicable_agent.sandboxes.base import sandbox_id_for


async def test_protected_files_cannot_be_deleted_or_renamed_away(api: Any) -> None:
    c = api.client
    made = (await c.post("/api/projects", json={"name": "Guarded", "template_id": "vite"})).json()
    base = f"/api/sandbox/{made['project_id']}"
    root = api.workspaces / sandbox_id_for(made["project_id"])
    for path in ("/package.json", "/src/App.tsx", "/notes.md"):
        assert (await c.post(base + "/create", json={"path": path, "kind": "file",
                                                     "content": "x"})).status_code == 200  # fmt: skip
    (root / "src" / "main.tsx").write_text("import './App';\n")  # the platform's file

    refusals = [
        await c.delete(base + "/rm", params={"path": "/package.json"}),
        await c.delete(base + "/rm", params={"path": "package.json"}),
        await c.delete(base + "/rm", params={"path": "/src", "recursive": "1"}),
        await c.post(base + "/rename", json={"from": "/package.json", "to": "/pkg.json"}),
        await c.post(base + "/rename", json={"from": "/src", "to": "/source"}),
    ]
    for refused in refusals:
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "protected_file"
    assert refusals[0].json()["detail"] == (
        "/package.json is a protected file of this project's template and cannot be deleted "
        "or moved"
    )
    assert "/src (it holds /src/main.tsx)" in refusals[2].json()["detail"]
    assert (root / "package.json").read_text() == "x"
    assert (root / "src" / "main.tsx").exists()
    assert not (root / "pkg.json").exists()

    # Writing a protected file (even emptying it) is an edit, not a delete.
    assert (await c.put(base + "/write", json={"path": "/package.json", "content": ""})).is_success
    # Unprotected files still go; a protected file that is not there does not hold a folder.
    moved = await c.post(base + "/rename", json={"from": "/notes.md", "to": "/docs.md"})
    assert moved.json() == {"from": "/notes.md", "to": "/docs.md"}
    assert (await c.delete(base + "/rm", params={"path": "/docs.md"})).status_code == 200
    assert (await c.delete(base + "/rm", params={"path": "/src/App.tsx"})).status_code == 200
    (root / "src" / "main.tsx").unlink()
    assert (await c.delete(base + "/rm", params={"path": "/src", "recursive": "1"})).json() == {
        "path": "/src"
    }
    assert not (root / "src").exists()
    assert not (root / "docs.md").exists()

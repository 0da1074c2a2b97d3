"""Session init: provision, write ``amicable-db.js`` into the workspace, patch ``index.html``;
then the injected key works through the proxy. Project delete cleans up."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import attrs
import pytest
from amicable_agent.db import (
    app_schema_name,
    open_app_database,
    parse_db_js,
    store_origin_lookup,
)
from amicable_agent.http import projects as api_projects
from amicable_agent.sandboxes.base import sandbox_id_for
from amicable_testing import FakeSandboxBackend, MemoryStore
from amicable_testing.workspace_runtime import WorkspaceRuntime

from .conftest import Hasura, static_origins

TEMPLATE = Path(__file__).resolve().parents[3] / "libs/templates/src/amicable_templates/stacks/vite"
PREVIEW_URL = "http://todo-app.preview.localhost:8123/"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(TEMPLATE / "index.html", ws / "index.html")
    return ws


async def test_init_injects_a_working_key_and_keeps_it_on_reconnect(
    hasura: Hasura, workspace: Path
) -> None:
    runtime = WorkspaceRuntime(workspace)
    origins = static_origins({"p1": {"http://todo-app.preview.localhost:8123"}})
    async with open_app_database(hasura.config, origins=origins) as db:
        assert db is not None
        info = await db.prepare_session("p1", runtime, preview_url=PREVIEW_URL)
        schema = app_schema_name("p1")
        assert (info.db_schema, info.db_role) == (schema, schema)
        assert info.graphql_url == "http://agent.test/db/apps/p1/graphql"
        js = (workspace / "public/amicable-db.js").read_text()
        doc = parse_db_js(js)
        assert doc is not None
        assert doc["appId"] == "p1"
        assert doc["graphqlUrl"] == info.graphql_url
        assert doc["previewOrigin"] == "http://todo-app.preview.localhost:8123"
        html = (workspace / "index.html").read_text()
        assert html.count('<script src="/amicable-db.js"></script>') == 1
        assert html.index("amicable-db.js") < html.index("/src/main.tsx")

        # the injected key is what the browser presents
        resp = await db.proxy.handle(
            "POST",
            "p1",
            {
                "Origin": "http://todo-app.preview.localhost:8123",
                "X-Amicable-App-Key": doc["appKey"],
            },
            b'{"query": "{ __typename }"}',
        )
        assert resp.status == 200
        assert b"query_root" in resp.body

        # reconnect: same key, files untouched, index not patched twice
        mtime = (workspace / "public/amicable-db.js").stat().st_mtime_ns
        again = await db.prepare_session("p1", runtime, preview_url=PREVIEW_URL)
        assert again == info
        assert (workspace / "public/amicable-db.js").stat().st_mtime_ns == mtime
        assert (workspace / "index.html").read_text() == html

        # a tampered file gets a fresh key; the tampered one stops working
        (workspace / "public/amicable-db.js").write_text(js.replace(doc["appKey"], "forged"))
        await db.prepare_session("p1", runtime, preview_url=PREVIEW_URL)
        fresh = parse_db_js((workspace / "public/amicable-db.js").read_text())
        assert fresh is not None
        assert fresh["appKey"] not in (doc["appKey"], "forged")
        record = await db.provisioner.get_app("p1")
        assert record is not None
        assert record.key_matches(fresh["appKey"])
        assert not record.key_matches(doc["appKey"])


async def test_init_without_index_html_still_provisions(hasura: Hasura, tmp_path: Path) -> None:
    runtime = WorkspaceRuntime(tmp_path)
    async with open_app_database(hasura.config, origins=static_origins({})) as db:
        assert db is not None
        info = await db.prepare_session(
            "p1", runtime, preview_url=PREVIEW_URL, public_base_url="http://127.0.0.1:9999"
        )
    assert info.graphql_url == "http://agent.test/db/apps/p1/graphql"  # config wins
    assert (tmp_path / "public/amicable-db.js").is_file()
    assert not (tmp_path / "index.html").exists()


async def test_local_mode_uses_the_agents_own_url(hasura: Hasura, workspace: Path) -> None:
    config = attrs.evolve(hasura.config, public_base_url=None)
    async with open_app_database(config, origins=static_origins({})) as db:
        assert db is not None
        info = await db.prepare_session(
            "p1",
            WorkspaceRuntime(workspace),
            preview_url=PREVIEW_URL,
            public_base_url="http://127.0.0.1:8000",
        )
    assert info.graphql_url == "http://127.0.0.1:8000/db/apps/p1/graphql"


async def test_store_origin_lookup_follows_slug_and_sandbox_id() -> None:
    store = MemoryStore()
    project = await store.create_project("Todo app", template_id="vite")
    lookup = store_origin_lookup(store, lambda label: f"http://{label}.preview.localhost:8123/")
    origins = set(await lookup(project.project_id))
    assert origins == {
        f"http://{project.slug}.preview.localhost:8123",
        f"http://{sandbox_id_for(project.project_id)}.preview.localhost:8123",
    }
    renamed = await store.rename_project(project.project_id, "Shopping list")
    assert renamed is not None
    assert f"http://{renamed.slug}.preview.localhost:8123" in set(await lookup(project.project_id))
    assert f"http://{project.slug}.preview.localhost:8123" not in set(
        await lookup(project.project_id)
    )
    assert set(await lookup("no-such-project")) == set()


#: A session manager whose sessions keep no snapshots (the purge asks it).
NO_SNAPSHOTS = types.SimpleNamespace(deps=types.SimpleNamespace(snapshots=None))


async def test_project_purge_drops_the_app_database(hasura: Hasura) -> None:
    store = MemoryStore()
    project = await store.create_project("Todo app", template_id="vite")
    async with open_app_database(hasura.config, origins=static_origins({})) as db:
        assert db is not None
        await db.provisioner.ensure_app(project.project_id)
        backend = FakeSandboxBackend()
        state = types.SimpleNamespace(
            store=store, backend=backend, db=db, git_sync=None, manager=NO_SNAPSHOTS
        )
        await api_projects._purge(state, project)  # type: ignore[arg-type]
        assert await db.provisioner.get_app(project.project_id) is None
    assert app_schema_name(project.project_id) not in hasura.fake.schemas
    assert backend.deleted == [sandbox_id_for(project.project_id)]


async def test_project_purge_survives_hasura_being_down(closed_port_url: str) -> None:
    from .conftest import hasura_config

    store = MemoryStore()
    project = await store.create_project("Todo app", template_id="vite")
    async with open_app_database(hasura_config(closed_port_url), origins=static_origins({})) as db:
        state = types.SimpleNamespace(
            store=store, backend=FakeSandboxBackend(), db=db, git_sync=None, manager=NO_SNAPSHOTS
        )
        await api_projects._purge(state, project)  # type: ignore[arg-type]
    assert project.project_id not in store.projects  # the row is purged anyway


async def test_try_prepare_session_never_fails_the_session(
    closed_port_url: str, workspace: Path
) -> None:

    from .conftest import hasura_config

    async with open_app_database(hasura_config(closed_port_url), origins=static_origins({})) as db:
        assert db is not None
        info = await db.try_prepare_session(
            "p1", WorkspaceRuntime(workspace), preview_url=PREVIEW_URL
        )
    assert info is None
    # no database this time, but a page that loads the script gets a placeholder, not a 404
    assert (workspace / "public/amicable-db.js").read_text() == "window.__AMICABLE_DB__ = null;\n"


async def test_init_fields_encode_like_upstream(hasura: Hasura, workspace: Path) -> None:
    from amicable_protocol import unstructure
    from amicable_protocol.messages import InitReply, ProjectInfo

    async with open_app_database(hasura.config, origins=static_origins({})) as db:
        assert db is not None
        info = await db.try_prepare_session(
            "p1", WorkspaceRuntime(workspace), preview_url=PREVIEW_URL
        )
    assert info is not None
    reply = InitReply(
        url=PREVIEW_URL,
        sandbox_id="amicable-x",
        exists=False,
        app_id="p1",
        template_id="vite",
        project=ProjectInfo(project_id="p1", name="T", slug="t", template_id="vite"),
        **info.init_fields(),
    )
    wire = unstructure(reply)
    schema = app_schema_name("p1")
    assert wire["db"] == {"graphql_url": "http://agent.test/db/apps/p1/graphql"}
    assert (wire["db_schema"], wire["db_role"]) == (schema, schema)
    doc = parse_db_js((workspace / "public/amicable-db.js").read_text())
    assert doc is not None
    assert doc["appKey"] not in json.dumps(wire)  # the key goes to the sandbox, not to INIT

"""Row editing by role in real Chromium: the real agent (signed-in users through a fake OpenID
provider) on the fake Hasura backed by a real PostgreSQL. Carol, an editor of Alice's
project, adds a row and edits a cell in the Database pane and PostgreSQL holds them; Bob, a
viewer, sees the rows with the reason they are read-only and no edit controls, and the API
refuses his changes with 403. Sandboxes are local workspaces (no preview is needed)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import trio
from amicable_agent.config import AgentConfig
from amicable_agent.db import HasuraConfig, JwtSecret, app_schema_name
from amicable_agent.sandboxes.base import SandboxHandle
from amicable_agent.server import serve
from amicable_testing import FakeSandboxBackend
from amicable_testing.fake_hasura import FakeHasura
from amicable_testing.fake_oidc import FakeOidc, open_fake_oidc
from amicable_testing.logins import ALICE, BOB, CAROL, CLIENT_ID, CLIENT_SECRET, oidc_config
from amicable_testing.postgres import PostgresServer, postgres_available
from amicable_testing.workspace_runtime import WorkspaceRuntime
from conftest import CHROMIUM, _dist, screenshot  # type: ignore[import-not-found]
from playwright.sync_api import expect

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL not installed")

ADMIN_SECRET = "e2e-rows-admin-secret"
JWT_KEY = b"an-hs256-key-long-enough-for-the-rows-e2e"


@attrs.define
class RowsSite:
    """The agent, its provider and the fake Hasura, served from a background Trio loop."""

    data_dir: Path
    pg_url: str
    origin: str = ""
    oidc: FakeOidc | None = None
    _token: Any = None
    _cancel: trio.CancelScope | None = None
    _ready: threading.Event = attrs.field(factory=threading.Event)
    _error: BaseException | None = None

    @asynccontextmanager
    async def _runtimes(self, handle: SandboxHandle) -> AsyncIterator[WorkspaceRuntime]:
        root = self.data_dir / "ws" / handle.sandbox_id
        root.mkdir(parents=True, exist_ok=True)
        await trio.lowlevel.checkpoint()
        yield WorkspaceRuntime(root)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._cancel = scope
            async with (
                open_fake_oidc(
                    clients={CLIENT_ID: (CLIENT_SECRET, [])}, users=[ALICE, BOB, CAROL]
                ) as oidc,
                trio.open_nursery() as nursery,
            ):
                fake = FakeHasura(admin_secret=ADMIN_SECRET, jwt_key=JWT_KEY,
                                  postgres_url=self.pg_url)  # fmt: skip
                hasura_url = await nursery.start(fake.serve)
                hasura = HasuraConfig(base_url=hasura_url, admin_secret=ADMIN_SECRET,
                                      jwt_secret=JwtSecret(key=JWT_KEY))  # fmt: skip
                config = AgentConfig(
                    host="127.0.0.1", port=0, internal_port=0, data_dir=self.data_dir,
                    editor_dist=_dist(), auth=oidc_config(oidc.issuer), hasura=hasura,
                )  # fmt: skip
                ports = await nursery.start(
                    lambda task_status: serve(config, backend=FakeSandboxBackend(),
                                              runtime_factory=self._runtimes,
                                              task_status=task_status)
                )  # fmt: skip
                self.origin = f"http://localhost:{ports.public}"
                oidc.register_client(CLIENT_ID, CLIENT_SECRET, [f"{self.origin}/auth/callback"])
                self.oidc = oidc
                self._ready.set()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError("the agent did not start") from self._error

    def login_as(self, user: Any) -> None:
        assert self.oidc is not None
        oidc = self.oidc

        async def choose() -> None:
            oidc.login_as(user)

        trio.from_thread.run(choose, trio_token=self._token)

    def stop(self) -> None:
        if self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            cur = conn.execute(query.encode())
            return cur.fetchall() if cur.description is not None else []


@pytest.fixture
def rows_site(tmp_path: Path) -> Iterator[RowsSite]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed")
    with PostgresServer() as pg:
        site = RowsSite(tmp_path / "data", pg.create_database())
        site.start()
        try:
            yield site
        finally:
            site.stop()


def _sign_in(browser: Any, site: RowsSite, user: Any) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=site.origin)
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    page.get_by_test_id("sign-in").wait_for()
    site.login_as(user)
    page.get_by_test_id("sign-in-button").click()
    page.get_by_test_id("user-menu").wait_for()
    page.errors = errors  # type: ignore[attr-defined]
    return page


def _open_rows(page: Any, url: str) -> Any:
    page.goto(url)
    page.get_by_test_id("tab-database").click()
    pane = page.get_by_test_id("db-pane")
    pane.get_by_test_id("db-table-notes").click()
    pane.get_by_test_id("db-tab-rows").click()
    return pane.get_by_test_id("db-rows")


def test_an_editor_changes_rows_and_a_viewer_only_reads_them(
    browser: Any, rows_site: RowsSite
) -> None:
    alice = _sign_in(browser, rows_site, ALICE)
    made = alice.request.post("/api/projects", data={"name": "Notes"},
                              headers={"Origin": rows_site.origin})  # fmt: skip
    assert made.ok, made.text()
    pid, slug = made.json()["project_id"], made.json()["slug"]
    schema = app_schema_name(pid)
    rows_site.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE {schema}.notes "
                  "(id bigserial PRIMARY KEY, body text NOT NULL, stars integer); "
                  f"INSERT INTO {schema}.notes (body, stars) VALUES ('first', 1)")  # fmt: skip
    for user, role in ((BOB, "viewer"), (CAROL, "editor")):
        shared = alice.request.post(f"/api/projects/{pid}/members",
                                    data={"email": user.email, "role": role},
                                    headers={"Origin": rows_site.origin})  # fmt: skip
        assert shared.ok, shared.text()
    url = f"/p/{slug}"

    carol = _sign_in(browser, rows_site, CAROL)
    rows = _open_rows(carol, url)
    expect(rows.get_by_test_id("db-rows-range")).to_have_text("Rows 1–1 of 1")
    form = rows.get_by_test_id("db-new-row")
    form.locator("[data-column=body]").fill("second")
    form.locator("[data-column=stars]").fill("5")
    rows.get_by_test_id("db-row-add").click()
    expect(rows.get_by_test_id("db-rows-range")).to_have_text("Rows 1–2 of 2")
    rows.locator("[data-testid=db-cell-edit][data-column=body]").nth(1).click()
    rows.get_by_test_id("db-cell-input").fill("second, edited")
    rows.get_by_test_id("db-cell-save").click()
    expect(rows.locator("[data-testid=db-cell-edit][data-column=body]").nth(1)).to_have_text(
        "second, edited"
    )
    assert rows_site.sql(f"SELECT id, body, stars FROM {schema}.notes ORDER BY id") == [
        (1, "first", 1), (2, "second, edited", 5)]  # fmt: skip

    bob = _sign_in(browser, rows_site, BOB)
    rows = _open_rows(bob, url)
    expect(rows.get_by_test_id("db-rows-range")).to_have_text("Rows 1–2 of 2")
    expect(rows.get_by_test_id("db-rows-read-only")).to_contain_text("not change it")
    expect(rows).to_contain_text("second, edited")
    for control in ("db-cell-edit", "db-new-row", "db-row-delete", "db-row-add"):
        expect(rows.get_by_test_id(control)).to_have_count(0)
    screenshot(bob, "database-rows-viewer")
    refused = bob.request.patch(f"/api/db/{pid}/tables/notes/rows",
                                data={"key": {"id": 1}, "values": {"body": "mine"}},
                                headers={"Origin": rows_site.origin})  # fmt: skip
    assert refused.status == 403
    assert refused.json()["error"] == "read_only"
    assert rows_site.sql(f"SELECT body FROM {schema}.notes WHERE id = 1") == [("first",)]

    for page in (alice, bob, carol):
        assert page.errors == [], page.errors  # type: ignore[attr-defined]
        page.context.close()
